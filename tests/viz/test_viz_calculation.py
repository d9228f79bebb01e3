import numpy as np
import pytest

from twin.errors import ConfigError
from twin.orchestration import TrainingPlan
from twin.viz.calculation import (
    comparison_html,
    compute,
    config_texts,
    default_grid_example,
    default_plot_column,
    grid_examples,
    grid_figure,
    result_figure,
    result_table_html,
)
from usecases import registry
from usecases.beam_orchestration import BeamOrchestrationConfig, CrowdConfig, RunConfig
from usecases.beam_orchestration import compute as beam_compute
from usecases.registry import CalculationScenario


def _spec(name: str) -> CalculationScenario:
    spec = registry.get(name)
    assert isinstance(spec, CalculationScenario)
    return spec


def test_texts_are_what_set_accepts() -> None:
    """Every field becomes ``--set`` text (tuples comma-separated, None empty), and computes unchanged."""
    # Prepare
    spec = _spec("seed-split-inference")
    # Execute
    texts = config_texts(spec.default_config())
    # Assert
    assert texts["model.ue_gflops"] == "0.0, 3.9, 9.4, 18.7, 27.9, 30.7, 31.0"
    assert compute(spec, texts) == spec.compute(spec.default_config())


def test_an_edited_parameter_changes_the_result() -> None:
    """Halving the link rate makes the transmission of the raw input take twice as long."""
    # Prepare
    spec = _spec("seed-split-inference")
    texts = config_texts(spec.default_config())
    base = compute(spec, texts)
    # Execute
    slower = compute(spec, {**texts, "link.rate_bps": str(float(texts["link.rate_bps"]) / 2)})
    # Assert
    assert slower.rows[0]["tx_latency_ms"] == pytest.approx(2 * base.rows[0]["tx_latency_ms"])
    with pytest.raises(ConfigError, match="link.rate_bps"):
        compute(spec, {**texts, "link.rate_bps": "fast"})


@pytest.mark.parametrize("name", ["seed-split-inference", "seed-federated-training"])
def test_tables_and_plot_of_each_calculation(name: str) -> None:
    """Each calculation shows its rows, the paper comparison and a plot (a curve, or ours ÷ paper bars)."""
    # Prepare
    spec = _spec(name)
    result = spec.compute(spec.default_config())
    column = default_plot_column(list(result.columns[1:])) if len(result.rows) > 1 else ""
    # Execute
    table, compared, figure = (
        result_table_html(result),
        comparison_html(result),
        result_figure(result, column),
    )
    # Assert
    assert table.count("<tr>") == len(result.rows) + 1
    assert compared.count("<tr>") == 1 + sum(c.paper is not None for c in result.comparison)
    ax = figure.axes[0]
    if len(result.rows) > 1:
        assert column == "response_latency_ms" and len(ax.lines[0].get_xdata()) == len(result.rows)
    else:
        assert len(ax.patches) == sum(bool(c.paper) for c in result.comparison)


def test_beam_orchestration_shows_predicted_and_true_grids() -> None:
    """One window's true and predicted class grids side by side, as recorded, with the base stations."""
    # Prepare
    config = BeamOrchestrationConfig(
        run=RunConfig(dynamic_shares_pct=(100,)),
        crowd=CrowdConfig(users=300, windows=60, train_windows=40),
        training=TrainingPlan(rounds=2, local_epochs=1, batch_size=256),
    )
    result = beam_compute(config)
    examples = grid_examples(result)
    # Execute
    label = default_grid_example(list(examples))
    example = examples[label]
    figure = grid_figure(example)
    # Assert
    assert set(examples) == {r["row"] for r in result.rows} and label == "collaborative 100%"
    assert example.true.shape == example.predicted.shape == config.area.grid_shape
    true_ax, predicted_ax = figure.axes[:2]
    shown_true = np.asarray(true_ax.images[0].get_array())
    shown_predicted = np.asarray(predicted_ax.images[0].get_array())
    np.testing.assert_array_equal(shown_true, example.true)
    np.testing.assert_array_equal(shown_predicted, example.predicted)
    assert (shown_true > 0).any() and len(set(np.unique(shown_true))) > 1
    for ax in (true_ax, predicted_ax):
        sites = ax.collections[0].get_offsets()
        np.testing.assert_allclose(sites, example.site_xy_m)
    assert example.accuracy == pytest.approx(float(np.mean(example.true == example.predicted)))
    lowest = result.rows[[r["row"] for r in result.rows].index(label)]["accuracy_lower_pct"]
    assert 100 * example.accuracy >= lowest - 1e-9
    assert "users" in figure.axes[-1].get_yticklabels()[0].get_text()
