import threading
import time
from pathlib import Path

import pytest
from viz_helpers import RunThreads, small_overrides

from twin.viz.live import LiveScenario


def _live(**extra: object) -> LiveScenario:
    return LiveScenario(scenario_name="home-health", seed=1, **{**small_overrides("home-health"), **extra})


def test_step_is_one_simulated_second_on_the_embedded_broker(run_threads: RunThreads) -> None:
    """Each step advances the twin 1 s and samples energy/CO2; the run has its own broker until closed."""
    # Prepare
    live = _live()
    try:
        assert [n for n in run_threads() if n == "twin-embedded-broker"] == ["twin-embedded-broker"]
        # Execute
        for _ in range(4):
            live.step()
        # Assert
        assert live.twin is not None and float(live.twin.time) == 4.0 and live.time == 4.0
        assert [s.time_s for s in live.samples] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert live.samples[-1].energy_j > 0 and live.samples[-1].co2_g > 0
        assert live.running and live.status == "running" and live.error is None
        assert live.space is live.twin.space
    finally:
        live.close()
    assert live.status == "stopped" and not live.running and live.closed


def test_a_bad_parameter_is_shown_not_raised(run_threads: RunThreads) -> None:
    """A value that does not validate leaves the model stopped with the message, and no run open."""
    # Execute
    live = _live(**{"fl.rounds": "many"})
    # Assert
    assert live.error is not None and "fl.rounds" in live.error
    assert not live.running and live.status == "error" and live.twin is None and live.run_id == ""
    assert run_threads() == []
    live.step()
    assert live.twin is None and live.space.x_max == 1.0 and not live.samples
    live.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario_name": "no-such-scenario"}, "unknown scenario"),
        ({"scenario_name": "seed-split-inference"}, "calculation"),
        ({"scenario_name": "home-health", "overrides": "fl.lr"}, "key=value"),
        ({"scenario_name": "home-health", "seed": "-2"}, "seed"),
        ({"scenario_name": "home-health", "broker": "mqtt://"}, "broker"),
    ],
)
def test_what_cannot_start_says_why(kwargs: dict[str, str], message: str) -> None:
    """Unknown or calculation scenarios, bad settings, seeds or broker URLs become the model's error."""
    # Execute
    live = LiveScenario(**kwargs)
    # Assert
    assert live.error is not None and message in live.error.lower()
    live.close()


def test_close_during_a_step_does_not_wait_for_it(run_threads: RunThreads) -> None:
    """Closing while the play loop is inside a step returns at once; the step's thread then closes the run."""
    # Prepare
    live = _live()
    assert live.session is not None
    entered, release = threading.Event(), threading.Event()
    real_step = live.session.step

    def slow_step() -> bool:
        entered.set()
        release.wait(10)
        return real_step()

    live.session.step = slow_step  # type: ignore[method-assign]
    player = threading.Thread(target=live.step)
    player.start()
    assert entered.wait(10)
    # Execute
    started = time.monotonic()
    live.close()
    waited_s = time.monotonic() - started
    # Assert
    assert waited_s < 1.0 and live.closed
    assert "twin-embedded-broker" in run_threads()
    release.set()
    player.join(30)
    assert live.status == "stopped" and not live.running


def test_run_directory_kept_only_when_asked(tmp_path: Path) -> None:
    """With ``out_dir`` the closed run's directory is kept there; without, its temporary parent is removed."""
    # Prepare
    kept = _live(out_dir=str(tmp_path))
    scratch = _live()
    assert scratch.session is not None
    temporary_parent = scratch.session.run_dir.parent
    # Execute
    kept.step()
    kept.close()
    scratch.close()
    # Assert
    assert kept.session is not None and (tmp_path / kept.run_id / "summary.json").exists()
    assert not temporary_parent.exists()


def test_qoais_covers_every_service_and_the_run_ends() -> None:
    """After the rounds are done the model stops running; QoAIS reports name training and inference."""
    # Prepare
    live = _live(**{"fl.rounds": 2})
    try:
        # Execute
        for _ in range(60):
            if not live.running:
                break
            live.step()
        reports = live.qoais_reports()
        # Assert
        assert not live.running and live.status == "running"
        assert [r.kind for r in reports] == ["federated training", "two-stage inference"]
        assert all(r.indicators for r in reports)
    finally:
        live.close()
    assert live.status == "finished"
