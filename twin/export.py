"""``twin export``: a run directory's tables (Parquet) as CSV, JSON or copies of the Parquet files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from twin.errors import ConfigError

FORMATS = ("csv", "parquet", "json")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts, missing values (NaN, NaT) as ``None``."""
    return [
        {k: (None if not isinstance(v, list | dict) and pd.isna(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def write_table(frame: pd.DataFrame, dest: Path, output_format: str) -> None:
    """Write one table as ``csv`` (header, no index) or ``json`` (an array of records, one per line)."""
    if output_format == "csv":
        frame.to_csv(dest, index=False)
        return
    lines = [json.dumps(record, allow_nan=False, default=str) for record in _records(frame)]
    dest.write_text("[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n", encoding="utf-8")


def export_run(run_dir: Path, output_format: str, out_dir: Path | None = None) -> list[Path]:
    """Write every Parquet table of ``run_dir`` (``kpi``, ``events``, ``requests`` …) in ``output_format``.

    Args:
        run_dir: a run directory (``runs/<run_id>``).
        output_format: ``csv``, ``json`` or ``parquet`` (a copy, for moving a run's tables elsewhere).
        out_dir: where to write (created if needed); default: the run directory itself.

    Returns:
        The files written, or for ``parquet`` into the run directory itself, the tables already there.

    Raises:
        ConfigError: unknown format, ``run_dir`` is not a run directory, one of its tables cannot be
            read (nothing is written then), or ``out_dir`` cannot be written.
    """
    if output_format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory (twin run prints it at the end)")
    tables = sorted(run_dir.glob("*.parquet"))
    if not tables:
        raise ConfigError(f"{run_dir}: no Parquet tables here; is it a run directory (runs/<run_id>)?")
    target = out_dir if out_dir is not None else run_dir
    frames = {table: None if output_format == "parquet" else _read_table(table) for table in tables}
    written: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for table, frame in frames.items():
            dest = target / f"{table.stem}.{output_format}"
            if frame is None:
                if dest.resolve() != table.resolve():
                    shutil.copyfile(table, dest)
            else:
                write_table(frame, dest, output_format)
            written.append(dest)
    except OSError as exc:
        where = "--out " if out_dir is not None else ""
        raise ConfigError(f"{where}{target}: cannot write the tables there ({exc.strerror or exc})") from exc
    return written


def _read_table(table: Path) -> pd.DataFrame:
    """One Parquet table of a run directory, or a :class:`ConfigError` naming it if it cannot be read."""
    import pyarrow as pa

    try:
        return pd.read_parquet(table)
    except (OSError, ValueError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{table}: not a readable Parquet table ({reason})") from exc
