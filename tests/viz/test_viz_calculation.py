import pytest

from twin.errors import ConfigError
from twin.viz.calculation import (
    comparison_html,
    compute,
    config_texts,
    default_plot_column,
    result_figure,
    result_table_html,
)
from usecases import registry
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
