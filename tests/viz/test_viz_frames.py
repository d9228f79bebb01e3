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
