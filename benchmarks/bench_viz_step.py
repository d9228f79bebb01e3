"""Benchmark: what a simulated second costs in the ``twin viz`` page against the same second in ``twin run``.

Run: ``.venv/bin/python benchmarks/bench_viz_step.py [--scenario robotaxi] [--steps 60] [--repeats 5]``.

- **run**: :func:`~twin.runner.run_scenario` to ``--steps`` simulated seconds; the clock runs from the
  built model (``on_model``) to the last ``on_step``, so start-up and writing the run directory are not
  counted.
- **page**: the page of ``twin viz`` rendered headlessly (``solara.render``, as the tests do) with the
  same scenario, seed, settings and broker. Once the page has loaded and settled (``--settle`` seconds,
  so that the first click may draw at once, as for someone who looks at the page before pressing Step),
  its **Step** button is clicked ``--steps`` times (one simulated second each: what **▶** does every
  *Play Interval*, without the sleep). Each click steps the model and updates the page as the browser
  would see it: status, and the map, plots and QoAIS on the frames the page draws (PNGs included),
  whichever thread draws them. The map frames drawn while clicking are counted.

Both see the same seconds of the same run. Prints the median of ``--repeats`` interleaved repeats of
each, per simulated second, and the ratio of the medians (page step ÷ ``twin run`` step), and the page's
own overhead: its wall-clock less the time its model spent stepping (rounds wait for MQTT messages and
vary from run to run far more than drawing does; drawing in another thread shows as slower steps, not
as overhead). Timings on a shared machine are noisy: compare medians of several repeats, and say how
loaded the machine was (the load average is printed). ``--profile`` prints the page's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from twin.model import TwinModel
from twin.runner import RunOptions, run_scenario


def run_seconds(scenario: str, seed: int, overrides: dict[str, str], broker: str, steps: int) -> float:
    """Wall-clock of ``steps`` simulated seconds in ``run_scenario`` (start-up and close not counted)."""
    marks: list[float] = []

    def started(_model: TwinModel) -> None:
        marks.append(time.perf_counter())

    def stepped(_model: TwinModel) -> None:
        marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        options = RunOptions(scenario, seed, overrides, broker, Path(out), until_s=float(steps))
        run_scenario(options, on_step=stepped, on_model=started)
    if len(marks) != steps + 1:
        raise RuntimeError(f"expected {steps} steps, the run made {len(marks) - 1}")
    return marks[-1] - marks[0]


def _step_button(rc: Any) -> Any:
    import ipyvuetify as v
    import ipywidgets

    seen: set[int] = set()
    todo: list[Any] = [rc.container]
    while todo:
        widget = todo.pop()
        if not isinstance(widget, ipywidgets.Widget) or id(widget) in seen:
            continue
        seen.add(id(widget))
        if isinstance(widget, v.Btn) and widget.children == ["Step"]:
            return widget
        children = getattr(widget, "children", None)
        todo += list(children) if isinstance(children, list | tuple) else [children]
        todo += [s.get("children") for s in getattr(widget, "v_slots", None) or []]
    raise RuntimeError("no Step button on the page")


def page_seconds(
    scenario: str,
    seed: int,
    overrides: dict[str, str],
    broker: str,
    steps: int,
    profile: cProfile.Profile | None = None,
    settle_s: float = 0.0,
) -> tuple[float, float, int]:
    """Wall-clock of ``steps`` clicks on Step, the part in the model's steps, map frames drawn meanwhile.

    Rendering and drawing during the clicks are included; loading the page, and the ``settle_s`` seconds
    waited after it, are not.
    """
    import solara

    from twin.viz import app
    from twin.viz.live import LiveScenario
    from twin.viz.map import CoverageMapRenderer

    stepping: list[float] = []
    frames: list[float] = []
    step = LiveScenario.step
    frame_png = CoverageMapRenderer.frame_png

    def timed_step(model: LiveScenario) -> None:
        started = time.perf_counter()
        try:
            step(model)
        finally:
            stepping.append(time.perf_counter() - started)

    def counted_frame(renderer: CoverageMapRenderer) -> bytes:
        frames.append(time.perf_counter())
        return frame_png(renderer)

    settings = app.LaunchSettings(scenario=scenario, seed=seed, overrides=overrides, broker=broker)
    os.environ.update(settings.to_env())
    LiveScenario.step = timed_step  # type: ignore[method-assign, assignment]  # Mesa wraps it per instance
    CoverageMapRenderer.frame_png = counted_frame  # type: ignore[method-assign, assignment]
    _, rc = solara.render(solara.AppLayout(children=[app.Page()]), handle_error=False)
    try:
        button = _step_button(rc)
        time.sleep(settle_s)
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        for _ in range(steps):
            button.click()
        ended = time.perf_counter()
        if profile is not None:
            profile.disable()
    finally:
        LiveScenario.step = step  # type: ignore[method-assign]
        CoverageMapRenderer.frame_png = frame_png  # type: ignore[method-assign]
        rc.close()
    if len(stepping) != steps:
        raise RuntimeError(f"expected {steps} steps, the page made {len(stepping)}")
    drawn = sum(started <= t < ended for t in frames)
    return ended - started, sum(stepping), drawn


def main() -> None:
    """Time the same simulated seconds in ``twin run`` and in the page; print both and their ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="robotaxi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60, help="simulated seconds per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between page load and 1st click")
    parser.add_argument("--broker", default="embedded")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--profile", action="store_true", help="print the page's top 25 functions")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    profile = cProfile.Profile() if args.profile else None
    run_s: list[float] = []
    page_s: list[float] = []
    overhead_s: list[float] = []
    frames: list[int] = []
    loads: list[float] = []
    # warm-up (imports, first round, caches): not counted
    run_seconds(args.scenario, args.seed, overrides, args.broker, 5)
    page_seconds(args.scenario, args.seed, overrides, args.broker, 5)
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        run_s.append(run_seconds(args.scenario, args.seed, overrides, args.broker, args.steps))
        wall, model, drawn = page_seconds(
            args.scenario, args.seed, overrides, args.broker, args.steps, profile, args.settle
        )
        page_s.append(wall)
        overhead_s.append(wall - model)
        frames.append(drawn)
    median = statistics.median
    run, page = median(run_s) / args.steps, median(page_s) / args.steps
    overhead = median(overhead_s) / args.steps
    print(f"scenario {args.scenario}, seed {args.seed}, broker {args.broker}, {args.steps} simulated seconds")
    shown_loads = " ".join(f"{x:.1f}" for x in loads)
    print(f"load average (1 min) at each repeat: {shown_loads}, {os.cpu_count()} CPUs")
    print(f"twin run step : {run * 1000:8.1f} ms per simulated second (median of {args.repeats})")
    print(f"page step     : {page * 1000:8.1f} ms per simulated second (median of {args.repeats})")
    print(f"page step / twin run step: {page / run:.2f}× (ratio of the medians)")
    print(
        "per repeat: "
        + " ".join(f"{p / r:.2f}×" for p, r in zip(page_s, run_s, strict=True))
        + f"; map frames drawn while clicking: {' '.join(map(str, frames))}"
    )
    print(f"page overhead (wall-clock less model steps): {overhead * 1000:.1f} ms per simulated second")
    print(
        "all repeats, s: run "
        + " ".join(f"{s:.2f}" for s in run_s)
        + " · page "
        + " ".join(f"{s:.2f}" for s in page_s)
        + " · page overhead "
        + " ".join(f"{s:.2f}" for s in overhead_s)
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
