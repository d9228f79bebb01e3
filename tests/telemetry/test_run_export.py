"""`twin export`: a run directory's Parquet tables as CSV, JSON or Parquet, unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from stream_recording import Recording

from twin.errors import ConfigError
from twin.export import export_run


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.read_parquet(path)


@pytest.mark.broker
@pytest.mark.parametrize("output_format", ["csv", "json", "parquet"])
def test_export_round_trips_every_table(
    embedded_recording: Recording, tmp_path: Path, output_format: str
) -> None:
    """Each non-empty table exported and read back equals the Parquet table it came from."""
    # Prepare
    run_dir = embedded_recording.result.run_dir
    tables = {p.stem: pd.read_parquet(p) for p in run_dir.glob("*.parquet")}
    # Execute
    written = export_run(run_dir, output_format, tmp_path)
    # Assert
    assert sorted(p.name for p in written) == sorted(f"{stem}.{output_format}" for stem in tables)
    for path in written:
        original = tables[path.stem]
        if len(original):
            pd.testing.assert_frame_equal(_read(path), original, check_dtype=False)
    assert len(tables["kpi"]) == 2


@pytest.mark.broker
def test_cli_export_prints_the_files(embedded_recording: Recording, tmp_path: Path) -> None:
    """`twin export RUN_DIR --format json --out DIR` writes the tables there and prints their paths."""
    # Prepare
    command = [
        sys.executable,
        "-m",
        "twin",
        "export",
        str(embedded_recording.result.run_dir),
        "--format",
        "json",
        "--out",
        str(tmp_path),
    ]
    # Execute
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    # Assert
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "kpi.json") in proc.stdout.splitlines()
    assert json.loads((tmp_path / "kpi.json").read_text())[0]["round"] == 1


def test_export_refuses_what_is_not_a_run_directory(tmp_path: Path) -> None:
    """A bad format, a missing folder or one without tables is a ConfigError; on the CLI one line, exit 2."""
    # Prepare
    empty = tmp_path / "empty"
    empty.mkdir()
    # Execute
    proc = subprocess.run(
        [sys.executable, "-m", "twin", "export", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Assert
    with pytest.raises(ConfigError, match="--format"):
        export_run(empty, "xlsx")
    with pytest.raises(ConfigError, match="no Parquet tables"):
        export_run(empty, "csv")
    assert proc.returncode == 2 and "no such run directory" in proc.stderr and "Traceback" not in proc.stderr
