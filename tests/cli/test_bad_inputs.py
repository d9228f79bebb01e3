"""Every bad input is refused up front: one line on stderr, the documented exit code, within 15 s.

Each case runs the real ``twin`` command in a subprocess (issue 9, "refuse bad input up front").
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from twin.errors import EXIT_CODES

pytestmark = pytest.mark.slow  # each case starts a `twin` process (interpreter + torch import)

ANSWER_WITHIN_S = 15.0
HH = ("run", "home-health")


def _sets(*pairs: str) -> tuple[str, ...]:
    return tuple(arg for pair in pairs for arg in ("--set", pair))


# (arguments after `twin`, exit code, words the one line must contain)
CASES: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = [
    # the command line itself
    (("no-such-command",), 2, ("no-such-command",)),
    ((*HH, "--bogus"), 2, ("--bogus",)),
    ((*HH, "--seed", "abc"), 2, ("--seed",)),
    ((*HH, "--rounds", "1.5"), 2, ("--rounds",)),
    ((*HH, "--until", "soon"), 2, ("--until",)),
    (("export",), 2, ("run_dir",)),
    # scenario and --set syntax, keys, types
    (("run", "no-such-scenario"), 2, ("no-such-scenario", "home-health")),
    ((*HH, "--set", "fl.rounds"), 2, ("key=value",)),
    ((*HH, "--set", "=3"), 2, ("key=value",)),
    ((*HH, *_sets("no.such_key=1")), 2, ("no.such_key", "unknown key")),
    ((*HH, *_sets("fl.rounds=many")), 2, ("fl.rounds", "int")),
    ((*HH, *_sets("fl.rounds=2.5")), 2, ("fl.rounds", "int")),
    ((*HH, *_sets("fl.strategy=bogus")), 2, ("fl.strategy",)),
    ((*HH, *_sets("fl.rounds=-3")), 2, ("fl.rounds",)),
    # non-finite numbers, everywhere
    ((*HH, *_sets("fl.lr=inf")), 2, ("fl.lr", "finite")),
    ((*HH, *_sets("fl.lr=nan")), 2, ("fl.lr", "finite")),
    ((*HH, *_sets("fl.deadline_s=-inf")), 2, ("fl.deadline_s", "finite")),
    ((*HH, *_sets("fl.rounds=nan")), 2, ("fl.rounds",)),
    ((*HH, *_sets("devices.count=1e400")), 2, ("devices.count",)),
    ((*HH, *_sets("radio.carrier_ghz=nan")), 2, ("radio.carrier_ghz",)),
    (("run", "seed-federated-training", *_sets("link.rate_bps=inf")), 2, ("link.rate_bps",)),
    ((*HH, "--until", "nan"), 2, ("--until",)),
    ((*HH, "--until", "inf"), 2, ("--until",)),
    ((*HH, "--until", "-5"), 2, ("--until",)),
    # ranges and sizes: refused before the world is built
    ((*HH, *_sets("devices.count=1e7")), 2, ("devices.count", "RAM")),
    ((*HH, *_sets("devices.samples_max=1e7")), 2, ("devices.samples_max", "RAM")),
    ((*HH, *_sets("area.base_stations=1e6")), 2, ("area.base_stations",)),
    ((*HH, *_sets("area.grid_m=1e-4")), 2, ("area.grid_m",)),
    (
        (*HH, *_sets("area.width_m=1e6", "area.height_m=1e6", "area.grid_m=1")),
        2,
        ("area.grid_m", "area.base_stations", "RAM"),
    ),
    ((*HH, *_sets("fl.hidden=100000")), 2, ("fl.hidden", "RAM")),
    ((*HH, *_sets("fl.round_interval_s=1e9")), 2, ("fl.round_interval_s", "--until")),
    ((*HH, *_sets("bus.max_payload_bytes=1")), 2, ("bus.max_payload_bytes",)),
    ((*HH, *_sets("bus.max_payload_bytes=4096")), 2, ("bus.max_payload_bytes", "at least")),
    ((*HH, *_sets("bus.chunk_bytes=1")), 2, ("bus.chunk_bytes",)),
    # run options
    ((*HH, "--rounds", "0"), 2, ("--rounds",)),
    ((*HH, "--rounds", "-1"), 2, ("--rounds",)),
    ((*HH, "--seed", "-1"), 2, ("--seed",)),
    ((*HH, "--seed", str(2**64)), 2, ("--seed",)),
    ((*HH, "--workers", "-1"), 2, ("--workers",)),
    ((*HH, "--metrics-port", "70000"), 2, ("--metrics-port",)),
    ((*HH, "--metrics-port", "-1"), 2, ("--metrics-port",)),
    ((*HH, "--format", "bogus"), 2, ("--format",)),
    # broker URLs
    ((*HH, "--broker", "mqtt://[::1"), 2, ("--broker",)),
    ((*HH, "--broker", "http://example.org"), 2, ("--broker",)),
    ((*HH, "--broker", "mqtt://"), 2, ("--broker", "host")),
    ((*HH, "--broker", "mqtt://127.0.0.1:99999"), 2, ("--broker", "port")),
    ((*HH, "--broker", "mqtt://127.0.0.1:0"), 2, ("--broker", "port")),
    ((*HH, "--broker", "mqtt://127.0.0.1:x"), 2, ("--broker", "port")),
    ((*HH, "--broker", "mqtt://127.0.0.1:1"), 3, ("127.0.0.1:1", "unreachable")),
    # export
    (("export", "no/such/run"), 2, ("no/such/run",)),
]


def twin(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    return proc, time.monotonic() - started


def assert_refused(args: tuple[str, ...], code: int, words: tuple[str, ...], cwd: Path) -> str:
    proc, took_s = twin(*args, cwd=cwd)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert code in EXIT_CODES
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, (word, line)
    assert took_s < ANSWER_WITHIN_S, f"answered in {took_s:.1f} s"
    return line


@pytest.mark.parametrize(("args", "code", "words"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_and_its_exit_code(
    args: tuple[str, ...], code: int, words: tuple[str, ...], tmp_path: Path
) -> None:
    """A bad input is one `error:` line naming what is wrong, its documented exit code, quickly."""
    # Prepare
    out = ("--out", str(tmp_path / "runs")) if args[:1] == ("run",) else ()
    # Execute, Assert
    assert_refused((*args, *out), code, words, tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _read_only_dir(tmp_path: Path) -> Path:
    """A folder nothing can be written into (root ignores permissions, so a read-only filesystem then)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "runs"
    return Path("/sys/aiaas-twin-test-out")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A minimal run directory: one Parquet table."""
    folder = tmp_path / "run-1"
    folder.mkdir()
    pd.DataFrame({"round": [1, 2], "accuracy": [0.5, 0.6]}).to_parquet(folder / "kpi.parquet")
    return folder


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """`twin run --out FILE` is refused before anything runs: exit 2, naming --out."""
    # Prepare
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    # Execute, Assert
    assert_refused((*HH, "--out", str(a_file)), 2, ("--out", str(a_file)), tmp_path)
    assert a_file.read_text() == "not a folder"


def test_read_only_out_is_refused(tmp_path: Path) -> None:
    """`twin run --out` somewhere unwritable is refused before anything runs: exit 2, naming --out."""
    assert_refused((*HH, "--out", str(_read_only_dir(tmp_path))), 2, ("--out",), tmp_path)


def test_export_of_a_corrupt_table_names_the_file(run_dir: Path, tmp_path: Path) -> None:
    """`twin export` of a run directory with a corrupt Parquet file names the file; writes nothing."""
    # Prepare
    (run_dir / "events.parquet").write_bytes(b"PAR1 this is not parquet")
    # Execute
    line = assert_refused(("export", str(run_dir)), 2, ("events.parquet", "Parquet"), tmp_path)
    # Assert
    assert "kpi.parquet" not in line
    assert not (run_dir / "kpi.csv").exists()


def test_export_to_read_only_out_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """`twin export --out` somewhere unwritable is one line naming --out, exit 2."""
    assert_refused(("export", str(run_dir), "--out", str(_read_only_dir(tmp_path))), 2, ("--out",), tmp_path)


def test_export_bogus_format_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """`twin export --format bogus` is one line naming the formats, exit 2."""
    assert_refused(("export", str(run_dir), "--format", "bogus"), 2, ("--format", "csv"), tmp_path)


def test_export_of_a_good_run_dir_still_works(run_dir: Path, tmp_path: Path) -> None:
    """The checks refuse only bad input: a readable run directory exports to a writable --out."""
    # Execute
    proc, _ = twin("export", str(run_dir), "--out", str(tmp_path / "csv"), cwd=tmp_path)
    # Assert
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "csv" / "kpi.csv")["accuracy"].tolist() == [0.5, 0.6]
