"""Fixtures of the visualisation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from viz_helpers import RunThreads


@pytest.fixture(autouse=True)
def run_threads() -> Iterator[RunThreads]:
    """The run threads a test starts; the test fails if any is still running after it."""
    threads = RunThreads()
    yield threads
    assert threads.wait_until_gone() == [], "the test left a run open"
