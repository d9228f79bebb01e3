#!/usr/bin/env python
"""Re-run what the README quotes and rewrite its generated blocks, so its figures cannot go stale.

Blocks sit between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``:

- ``make-run``: the console output of ``twin run home-health`` (what ``make run`` prints), the
  wall-clock line kept as measured on this machine;
- ``default-verdicts``: each default agent scenario's QoAIS verdict per service, with the limiting
  indicator of any that fails;
- ``default-accuracy``: each default run's held-out accuracy against its majority-class baseline.

Usage: ``.venv/bin/python scripts/refresh_readme.py [--check]`` (``--check``: exit 1 if the README
differs from a fresh run instead of writing it; wall-clock, run ids and the broker's port are ignored then).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TWIN = [sys.executable, "-m", "twin"]
DEFAULT_SCENARIOS = (
    "home-health",
    "grid-inspection",
    "robotaxi",
    "industrial-robots",
    "disease-diagnosis",
    "unmanned-grazing",
    "virtual-classroom",
    "food-cycle",
)
ACCURACY_SCENARIOS = ("home-health", "grid-inspection", "robotaxi")
_BLOCK = re.compile(
    r"(<!-- BEGIN generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)", re.S
)


def _run(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    return subprocess.run(
        [*TWIN, "run", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


def make_run_block(out: Path) -> str:
    """The console output of the default home-health run, run directory made relative."""
    done = _run(["home-health"], out)
    if done.returncode not in (0, 4):
        raise SystemExit(f"twin run home-health failed ({done.returncode}): {done.stderr.strip()}")
    lines = [line.rstrip() for line in done.stdout.splitlines() if line.strip()]
    text = "\n".join(lines).replace(str(out) + "/", "runs/")
    return f"```\n{text}\n```\n"


def default_runs(out: Path) -> dict[str, dict[str, object]]:
    """The JSON document of each default agent scenario's run (``twin run NAME --format json``)."""
    documents = {}
    for scenario in DEFAULT_SCENARIOS:
        done = _run([scenario, "--format", "json"], out)
        if done.returncode not in (0, 4):
            raise SystemExit(f"twin run {scenario} failed ({done.returncode}): {done.stderr.strip()}")
        documents[scenario] = json.loads(done.stdout)
    return documents


def verdicts_block(documents: dict[str, dict[str, Any]]) -> str:
    """A table of the default scenarios' QoAIS verdicts, from real runs."""
    rows = ["| scenario | service | verdict | what limits it |", "|---|---|---|---|"]
    for scenario, document in documents.items():
        for report in document["qoais_reports"]:
            failed = [i for i in report["indicators"] if not i["passed"]]
            limits = "; ".join(
                f"{i['dimension']}.{i['name']} {_fmt(i['achieved'])}{i['unit']} "
                f"(target {_op(i)} {_fmt(i['target'])}{i['unit']})"
                for i in failed
            )
            rows.append(f"| `{scenario}` | {report['service']} | {report['verdict']} | {limits or '—'} |")
    return "\n".join(rows) + "\n"


def accuracy_block(documents: dict[str, dict[str, Any]]) -> str:
    """Each default run's last held-out accuracy against its majority-class baseline."""
    parts = []
    for scenario in ACCURACY_SCENARIOS:
        document = documents[scenario]
        last = document["kpis"][-1]
        baseline = document.get("majority_baseline_accuracy", float("nan"))
        parts.append(
            f"`{scenario}` {last['accuracy']:.3f} after {len(document['kpis'])} rounds "
            f"(majority-class baseline {baseline:.3f})"
        )
    return "Held-out accuracy of the default runs: " + "; ".join(parts) + ".\n"


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _op(indicator: dict[str, object]) -> str:
    return {"min": "≥", "max": "≤", "level": "≥", "mode": "∈"}[str(indicator["comparator"])]


def _strip_wall_clock(text: str) -> str:
    """What differs between two identical runs: wall-clock, the run id's random part, the broker's port."""
    text = re.sub(r"wall-clock\s+[\d.]+ s", "wall-clock", text)
    text = re.sub(r"(-s\d+)-[0-9a-f]{8}\b", r"\1-<id>", text)
    return re.sub(r"mqtt://127\.0\.0\.1:\d+", "mqtt://127.0.0.1:<port>", text)


def main() -> int:
    """Regenerate (or check) the README's generated blocks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args()
    readme = README.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        documents = default_runs(Path(tmp))
        blocks = {
            "make-run": make_run_block(Path(tmp)),
            "default-verdicts": verdicts_block(documents),
            "default-accuracy": accuracy_block(documents),
        }
    missing = set(blocks) - {m.group("name") for m in _BLOCK.finditer(readme)}
    if missing:
        raise SystemExit(f"README.md lacks the generated block(s): {', '.join(sorted(missing))}")
    fresh = _BLOCK.sub(lambda m: m.group(1) + blocks[m.group("name")] + m.group(4), readme)
    if args.check:
        stale = _strip_wall_clock(fresh) != _strip_wall_clock(readme)
        print("README.md is stale: run scripts/refresh_readme.py" if stale else "README.md is up to date")
        return 1 if stale else 0
    README.write_text(fresh)
    print("README.md refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
