"""``twin config``: every key documented with its unit; ``--config`` files read, validated, overridden."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.config import flatten
from twin.config_doc import describe_config, documented_toml, field_docs, unit_of
from twin.config_file import apply_config_file, overrides_with_file, read_config_file
from twin.errors import ConfigError
from twin.runner import resolve_config
from usecases import catalog, registry


@pytest.mark.parametrize("scenario", [entry.name for entry in catalog.BUILTIN])
def test_every_key_of_every_builtin_scenario_has_a_meaning(scenario: str) -> None:
    """A new config field without an attribute docstring (or Attributes: entry) fails this test."""
    keys = describe_config(registry.get(scenario).default_config())
    undocumented = [k.key for k in keys if not k.meaning]
    assert undocumented == []
    assert [k.key for k in keys] == list(flatten(registry.get(scenario).default_config()))


def test_units_come_from_the_name_or_the_doc() -> None:
    """Suffixes give units; a leading [unit] in the doc overrides a suffix that means something else."""
    assert [unit_of(n) for n in ("deadline_s", "min_rate_bps", "flops_per_s", "tx_power_dbm", "count")] == [
        "s",
        "bit/s",
        "FLOP/s",
        "dBm",
        "",
    ]
    keys = {k.key: k for k in describe_config(registry.get("seed-federated-training").default_config())}
    assert keys["model.params_m"].unit == "Mparam"  # not metres
    assert keys["model.params_m"].meaning.startswith("Trainable parameters")
    assert keys["fl.rounds"].unit == ""


def test_docstrings_and_attributes_sections_are_read() -> None:
    """Attribute docstrings win over the class docstring's Attributes: entries; both are one line."""

    @dataclasses.dataclass(frozen=True)
    class Probe:
        """A probe.

        Attributes:
            depth_m: burial depth,
                below the surface.
            rate_hz: sampling rate.
        """

        depth_m: float = 0.5
        rate_hz: float = 1.0
        """How often it samples.

        More detail that is not the meaning.
        """

    assert field_docs(Probe) == {
        "depth_m": "burial depth, below the surface.",
        "rate_hz": "How often it samples.",
    }


def test_twin_config_table_shows_default_unit_and_meaning() -> None:
    """``twin config robotaxi`` lists each key with default, unit and meaning; --set changes the default."""
    result = CliRunner().invoke(app, ["config", "robotaxi", "--set", "fl.rounds=7"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.split()[:1] == ["fl.deadline_s"])
    assert row.split()[1:4] == ["1.0", "s", "Round"]
    assert next(line for line in result.output.splitlines() if "fl.rounds" in line).split()[1] == "7"


def test_documented_toml_is_a_config_file_of_the_defaults(tmp_path: Path) -> None:
    """``twin config <s> --format toml`` written to a file and read back with --config gives the defaults."""
    result = CliRunner().invoke(app, ["config", "home-health", "--format", "toml"])
    file = tmp_path / "hh.toml"
    file.write_text(result.output)
    config_file = read_config_file(file)
    default = registry.get("home-health").default_config()
    assert config_file.scenario == "home-health"
    assert apply_config_file(default, config_file) == default
    assert (
        "# Round deadline: updates arriving later are stragglers, left out of the round. [s]" in result.output
    )
    assert "# bs_height_m =  (unset; float or None)" in documented_toml(default)


def test_set_overrides_the_file(tmp_path: Path) -> None:
    """Keys of the file apply in TOML tables; --set wins over the file."""
    file = tmp_path / "c.toml"
    file.write_text('[fl]\nrounds = 4\nstrategy = "fedprox"\n\n[devices]\ncount = 12\n')
    merged = overrides_with_file("home-health", read_config_file(file), {"fl.rounds": "9"})
    _, config = resolve_config("home-health", merged)
    assert (config.fl.rounds, config.fl.strategy, config.devices.count) == (9, "fedprox", 12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fl]\nroundz = 4\n", "fl.roundz: unknown key"),
        ('[fl]\nrounds = "many"\n', "fl.rounds: expected int, got 'many'"),
        ("[fl\nrounds = 4\n", "not valid TOML"),
        ('[twin]\nscenario = "home-health"\nseeds = 1\n', "[twin] table may only hold scenario and seed"),
    ],
)
def test_bad_files_are_one_config_error(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, wrong types and broken TOML are a ConfigError naming the file."""
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        overrides_with_file("home-health", read_config_file(file), {})
    assert message in str(caught.value) and str(file) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_file_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """``twin run home-health --config bad.toml`` prints one line and exits 2, running nothing."""
    file = tmp_path / "bad.toml"
    file.write_text("[fl]\nrounds = 2.5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "twin", "run", "home-health", "--config", str(file), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2
    assert lines == [f"error: --config {file}: fl.rounds: expected int, got 2.5"]
    assert not list(tmp_path.glob("home-health-*"))
