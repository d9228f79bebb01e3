import json
import subprocess
import sys
from pathlib import Path

import pytest

from twin.runner import RunOptions, resolve_config, run_calculation


def _compute(name: str, **overrides: str):  # type: ignore[no-untyped-def]
    spec, config = resolve_config(name, overrides)
    return spec.compute(config)


def test_split_inference_reproduces_table_3_13_with_paper_defaults() -> None:
    """With the paper's inputs every computed cell of Table 3-13 is within tolerance, 7 rows × 12 columns."""
    result = _compute("seed-split-inference")
    assert len(result.rows) == 7
    assert len(result.comparison) == 7 * 12
    assert all(c.within_tolerance for c in result.comparison)
    assert result.highlights["best_split_latency"] == 0 and result.highlights["best_split_energy"] == 6
    assert result.inputs_match_paper


def test_split_inference_follows_the_inputs() -> None:
    """A 20× slower link makes transmission 20× slower and moves the latency-optimal split to the device."""
    base = _compute("seed-split-inference")
    slow = _compute("seed-split-inference", **{"link.rate_bps": str(1.95e9 / 20)})
    assert slow.rows[1]["tx_latency_ms"] == pytest.approx(20 * base.rows[1]["tx_latency_ms"])
    assert slow.highlights["best_split_latency"] == 6
    assert not slow.inputs_match_paper
    assert not all(c.within_tolerance for c in slow.comparison)


def test_split_inference_with_a_custom_profile() -> None:
    """A user's own 3-point split profile is evaluated (no paper comparison for a different shape)."""
    result = _compute(
        "seed-split-inference",
        **{
            "model.ue_gflops": "0,1,2",
            "model.tx_data_mb": "8,1,0",
            "model.net_gflops": "2,1,0",
            "model.raw_input_mb": "8",
        },
    )
    assert len(result.rows) == 3 and result.comparison == ()
    # split 2: all on the device: 2 GFLOPs / 1.4 TFLOP/s = 1.4286 ms
    assert result.rows[2]["response_latency_ms"] == pytest.approx(2e9 / 1.4e12 * 1e3)


def test_split_profile_lengths_must_agree() -> None:
    """Split-profile columns of different lengths are a config error naming them."""
    from twin.errors import ConfigError

    with pytest.raises(ConfigError, match="same length"):
        resolve_config("seed-split-inference", {"model.ue_gflops": "0,1"})


def test_federated_training_reproduces_table_3_15() -> None:
    """With the paper's inputs every KPI of Table 3-15 is within tolerance."""
    result = _compute("seed-federated-training")
    assert {c.column for c in result.comparison} == {
        "per_sample_round_time_ms",
        "per_sample_round_energy_j",
        "training_efficiency_mb_per_j",
        "per_round_energy_j",
        "total_energy_j",
        "co2_g",
    }
    assert all(c.within_tolerance for c in result.comparison)


def test_federated_training_follows_the_inputs() -> None:
    """Half the rounds halve total energy and CO2; doubling the ECR doubles CO2 only."""
    base = _compute("seed-federated-training").rows[0]
    half = _compute("seed-federated-training", **{"fl.rounds": "100"}).rows[0]
    dirty = _compute("seed-federated-training", **{"carbon.ecr_kg_per_kwh": "1.404"}).rows[0]
    assert half["total_energy_j"] == pytest.approx(base["total_energy_j"] / 2)
    assert half["co2_g"] == pytest.approx(base["co2_g"] / 2)
    assert dirty["co2_g"] == pytest.approx(2 * base["co2_g"])
    assert dirty["total_energy_j"] == pytest.approx(base["total_energy_j"])


def test_calculation_run_writes_outputs(tmp_path: Path) -> None:
    """A calculation run writes config, results (JSON + Parquet) and the QoAIS report."""
    run = run_calculation(RunOptions("seed-split-inference", out_dir=tmp_path))
    names = {p.name for p in run.run_dir.iterdir()}
    assert names == {"config.toml", "results.json", "results.parquet", "qoais.json", "qoais.md"}
    qoais = json.loads((run.run_dir / "qoais.json").read_text())
    assert qoais["services"][0]["service"] == "split-inference"


def test_cli_json_format(tmp_path: Path) -> None:
    """`twin run seed-federated-training --format json` prints one JSON document with the comparison."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "twin",
            "run",
            "seed-federated-training",
            "--format",
            "json",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["rows"][0]["co2_g"] == pytest.approx(105100.58, rel=5e-3)
    assert all(c["within_tolerance"] for c in document["comparison"])
