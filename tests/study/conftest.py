"""Fixtures of the sweep, compare and report tests: tiny home-health runs (4 households, 1-2 rounds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import TINY

from twin.runner import RunOptions, run_scenario


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two finished 2-round runs that differ in strategy (fedavg, fedprox) and seed (0, 1)."""
    out = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed, strategy in ((0, "fedavg"), (1, "fedprox")):
        result = run_scenario(
            RunOptions(
                "home-health",
                seed=seed,
                overrides={**TINY, "fl.strategy": strategy},
                broker="local",
                out_dir=out,
                rounds=2,
                run_id=f"{strategy}-s{seed}",
            )
        )
        assert result.status == "finished", result.error
        dirs.append(result.run_dir)
    return dirs
