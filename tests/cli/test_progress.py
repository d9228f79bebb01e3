"""The progress line of ``twin run``: what it counts when ``--rounds`` sets ticks rather than rounds."""

from __future__ import annotations

from types import SimpleNamespace

from twin.cli import _ticked_service


class _Ticked:
    """A service that serves in ticks (``progress() -> (done, total)``)."""

    def progress(self) -> tuple[int, int]:
        return 3, 40


class _Plain:
    """A service without ticks."""


def test_a_ticked_service_gives_the_progress_total() -> None:
    """The first service with ``progress()`` is what the line counts; none: rounds (``rounds_limit``)."""
    # Prepare
    ticked = _Ticked()
    # Assert
    assert _ticked_service(SimpleNamespace(services=[_Plain(), ticked])) is ticked
    assert _ticked_service(SimpleNamespace(services=[_Plain()])) is None


def test_disease_diagnosis_counts_its_ticks() -> None:
    """The diagnosis service reports ticks served and the run's ticks (what ``--rounds`` sets)."""
    from agents.diagnosis import DiagnosisService

    service = SimpleNamespace(tick_index=7, config=SimpleNamespace(ticks=40))
    assert DiagnosisService.progress(service) == (7, 40)  # type: ignore[arg-type]
