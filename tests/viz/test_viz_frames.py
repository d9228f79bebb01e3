import pytest

from twin.viz.frames import MAX_WAIT_S, FrameGate


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_updates_faster_than_drawing_are_held_then_drawn() -> None:
    """Drawing gets at most its share of the wall-clock: updates in between are held, then drawn."""
    # Prepare
    clock = Clock()
    gate = FrameGate(share=0.25, clock=clock)
    assert gate.admit(1) == 1 and gate.due_in() is None
    gate.timed(lambda: clock.spend(0.1))  # the frame cost 0.1 s: the next may start 0.4 s after it began
    # Execute
    clock.spend(0.05)
    held = [gate.admit(update) for update in (2, 3, 4)]
    due = gate.due_in()
    clock.spend(0.3)
    drawn = gate.admit(5)
    # Assert
    assert held == [1, 1, 1] and due == pytest.approx(0.25)
    assert drawn == 2 and gate.due_in() is None and gate.cost_s == 0.0
    assert gate.admit(5) == 2  # the same update again (a re-render) is the same frame


def test_slow_frames_wait_at_most_the_cap() -> None:
    """However costly a frame, a held update is drawn at most MAX_WAIT_S after the frame before it."""
    # Prepare
    clock = Clock()
    gate = FrameGate(share=0.1, clock=clock)
    gate.admit("a")
    gate.timed(lambda: clock.spend(1.0))  # 1 s at a 10 % share would hold updates for 10 s
    clock.spend(0.5)
    # Execute
    held = gate.admit("b")
    due = gate.due_in()
    clock.spend(MAX_WAIT_S)
    # Assert
    assert held == 1 and due == pytest.approx(MAX_WAIT_S - 1.5)
    assert gate.admit("c") == 2
    with pytest.raises(ValueError, match="share"):
        FrameGate(share=0.0)


def test_frames_wait_a_minimum_interval_counted_again_after_a_restart() -> None:
    """However cheap a frame, the next begins ``min_interval_s`` later; ``restart`` counts that from now."""
    # Prepare
    clock = Clock()
    gate = FrameGate(share=0.5, clock=clock, min_interval_s=2.0, max_wait_s=10.0)
    assert gate.admit(1) == 1
    gate.timed(lambda: clock.spend(0.1))  # 0.2 s at a 50 % share: the interval decides
    clock.spend(1.0)
    # Execute
    held, due = gate.admit(2), gate.due_in()
    clock.spend(1.0)
    drawn = gate.admit(3)
    clock.spend(5.0)
    gate.restart()  # updates resume after a pause
    after_restart, due_after_restart = gate.admit(4), gate.due_in()
    forced = gate.admit(5, force=True)
    # Assert
    assert held == 1 and due == pytest.approx(0.9) and drawn == 2
    assert after_restart == 2 and due_after_restart == pytest.approx(2.0) and forced == 3
