"""``twin viz --replay``: a finished run shown again from its run directory, without a model or a broker."""

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd
import pytest
import solara
from viz_helpers import agent_scenarios, small_overrides

import twin
from twin.errors import ConfigError, TwinError
from twin.viz import app
from twin.viz.panels import qoais_html
from twin.viz.plots import PLOTS, accuracy_figure, figure_png
from twin.viz.replay import ReplayMapRenderer, ReplayScenario, load_replay

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_usecase.py"


def _record(scenario: str, out: Path, **overrides: Any) -> Path:
    settings = {**small_overrides(scenario), "bus.telemetry_interval_s": 2, **overrides}
    return twin.run(scenario, seed=1, overrides=settings, out=out).run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small home-health run (3 rounds, a telemetry sample every 2 s), recorded once."""
    return _record("home-health", tmp_path_factory.mktemp("runs"))


@pytest.fixture
def replay(run_dir: Path) -> ReplayScenario:
    return ReplayScenario(load_replay(run_dir))


def _telemetry(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "telemetry.parquet")
    return frame[frame["state"].notna()]


def test_agents_are_where_the_telemetry_puts_them(run_dir: Path, replay: ReplayScenario) -> None:
    """At each sample time, and until the next, every device shown is one sampled so far, at its sample's
    position, with its sample's state and serving cell; before the first sample no device is shown."""
    # Prepare
    devices = _telemetry(run_dir)
    times = sorted(devices["sim_time_s"].unique())
    # Execute
    replay.seek(times[0] - 1)
    before_first = list(replay.twin.devices)
    shown = {}
    for t in times:
        for at in (t, min(t + 1, replay.end_s)):
            replay.seek(at)
            shown[(t, at)] = {d.agent_id: (*d.position, d.state, d.serving_cell) for d in replay.twin.devices}
    # Assert
    assert len(times) >= 3 and before_first == []
    for t in times:
        rows = devices[devices["sim_time_s"] == t]
        expected = {r.agent_id: (r.x_m, r.y_m, r.state, r.serving_cell) for r in rows.itertuples(index=False)}
        for at in (t, min(t + 1, replay.end_s)):
            assert shown[(t, at)] == expected, (t, at)
    assert {a.agent_id for a in replay.space.agents} >= set(devices["agent_id"])  # Mesa draws them


def test_plots_hold_only_what_was_recorded_up_to_the_replay_time(
    run_dir: Path, replay: ReplayScenario
) -> None:
    """Rounds, requests and energy points at time t are those recorded at or before t; the plots' lines
    end there; the QoAIS is pending until the end of the run, then the run's final report."""
    # Prepare
    kpis = pd.read_parquet(run_dir / "kpi.parquet")
    requests = pd.read_parquet(run_dir / "requests.parquet")
    middle = float(kpis["sim_time_s"].iloc[1])  # the second round's end
    final = twin.load_run(run_dir).qoais
    # Execute
    replay.seek(middle)
    rows = list(replay.twin.kpi_rows)
    records = [r for s in replay.twin.services for r in s.records]
    energy_times = [s.time_s for s in replay.samples]
    xs = [x for line in accuracy_figure(replay).axes[0].lines for x in np.asarray(line.get_xdata(), float)]
    pending = qoais_html(replay.qoais_reports(), running=replay.status == "running")
    replay.seek(replay.end_s)
    at_end = qoais_html(replay.qoais_reports(), running=replay.status == "running")
    # Assert
    assert [r["round"] for r in rows] == kpis.loc[kpis["sim_time_s"] <= middle, "round"].tolist() == [1, 2]
    assert len(records) == int((requests["sim_time_s"] <= middle).sum()) > 0
    assert max(r["sim_time_s"] for r in records) <= middle and max(energy_times) <= middle
    assert xs and max(xs) <= middle
    assert "pending" in pending and "PASS" not in pending and "FAIL" not in pending
    assert replay.status == "finished" and [r.verdict for r in replay.qoais_reports()] == [
        r.verdict for r in final
    ]
    assert all(r.verdict in at_end for r in final) and "so far" not in at_end


def test_a_step_costs_milliseconds(replay: ReplayScenario) -> None:
    """Moving the replay time (what a step or the slider does) takes well under 10 ms."""
    # Prepare
    times = [float(t) for t in np.arange(0.0, replay.end_s + 1.0)] * 5
    replay.seek(0.0)
    # Execute
    costs = []
    for t in times:
        started = time.perf_counter()
        replay.seek(t)
        costs.append(time.perf_counter() - started)
        replay.seek(0.0 if t % 2 else replay.end_s)  # every seek changes sample
    # Assert
    print(f"seek: median {statistics.median(costs) * 1e3:.3f} ms, max {max(costs) * 1e3:.3f} ms")
    assert statistics.median(costs) < 0.010


def test_map_and_plots_draw_the_replay_time(replay: ReplayScenario) -> None:
    """The map's title and pixels follow the replay time; every plot draws at any time."""
    # Prepare
    renderer = ReplayMapRenderer(replay)
    # Execute
    replay.seek(0.0)
    start, start_title = renderer.frame_png(), renderer.title()
    replay.seek(replay.end_s)
    end, end_title = renderer.frame_png(), renderer.title()
    plots = [figure_png(build(replay)) for build in PLOTS.values()]
    # Assert
    assert start != end and "replay t = 0 s (no sample yet)" in start_title
    assert f"replay t = {replay.end_s:.0f} s (sample" in end_title and "round 3/3" in end_title
    assert all(png.startswith(b"\x89PNG") for png in plots)


def _children(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", None) or []:
        if isinstance(child, ipywidgets.Widget):
            yield from _children(child)


def test_page_slider_moves_the_map(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page served for TWIN_VIZ_REPLAY shows the map, the plots and the slider; moving the slider
    changes the replay time shown and the map."""
    # Prepare
    for name, value in app.LaunchSettings(replay=str(run_dir)).to_env().items():
        monkeypatch.setenv(name, value)
    _, rc = solara.render(solara.AppLayout(children=[app.Page()]), handle_error=False)
    try:
        import ipyvuetify as v

        everything = list(_children(rc.container))
        (slider,) = [w for w in everything if isinstance(w, v.Slider) and w.label == "replay time (s)"]
        (map_holder,) = [w for w in everything if "twin-map" in str(getattr(w, "class_", "")).split()]

        def map_png() -> bytes:
            return bytes(next(w for w in _children(map_holder) if isinstance(w, ipywidgets.Image)).value)

        before = map_png()
        plots = [w for w in everything if "twin-plot" in str(getattr(w, "class_", "")).split()]
        # Execute
        slider.v_model = 12
        deadline = time.monotonic() + 20.0  # a frame held back by the FrameGate is drawn a bit later
        while (map_png() == before or "replay time 12 s" not in _texts(rc.container)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        texts, after = _texts(rc.container), map_png()
        pending = _qoais_shown(rc.container)
        slider.v_model = slider.max
        final = _qoais_shown(rc.container)
    finally:
        rc.close()
    # Assert
    assert len(plots) == 4
    assert "replay time 12 s" in texts and after != before
    assert "pending" in pending and "pending" not in final and ("PASS" in final or "FAIL" in final)


def _texts(container: Any) -> str:
    return " ".join(str(c) for w in _children(container) for c in getattr(w, "children", []) or [])


def _qoais_shown(container: Any) -> str:
    return " ".join(str(getattr(w, "unsafe_innerHTML", "") or "") for w in _children(container))


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda root, run: root / "missing", "no such run directory"),
        (lambda root, run: root, "not a run directory"),
        (lambda root, run: _without(root, run, "telemetry.parquet"), "no telemetry.parquet"),
        (lambda root, run: _broken(root, run, "telemetry.parquet"), "cannot read"),
    ],
)
def test_bad_directories_are_refused(tmp_path: Path, run_dir: Path, make: Any, named: str) -> None:
    """Not a directory, not a run, a run without telemetry.parquet (an older one), an unreadable table."""
    # Execute
    with pytest.raises(ConfigError, match=named):
        load_replay(make(tmp_path, run_dir))


def test_a_calculation_run_is_refused(tmp_path: Path) -> None:
    """A calculation scenario's run has no agents to replay."""
    # Prepare
    run = twin.run("seed-split-inference", out=tmp_path)
    # Execute / Assert
    with pytest.raises(ConfigError, match="calculation"):
        load_replay(run.run_dir)


def _without(root: Path, run: Path, name: str) -> Path:
    copy = shutil.copytree(run, root / "older-run")
    (copy / name).unlink()
    return copy


def _broken(root: Path, run: Path, name: str) -> Path:
    copy = shutil.copytree(run, root / "broken-run")
    (copy / name).write_bytes(b"not parquet")
    return copy


def test_cli_refuses_a_bad_directory_in_one_line(tmp_path: Path, run_dir: Path) -> None:
    """``twin viz --replay`` with a run lacking telemetry, or a folder that is no run: one line, exit 2."""
    # Prepare
    older = _without(tmp_path, run_dir, "telemetry.parquet")
    # Execute
    procs = [
        subprocess.run(
            [sys.executable, "-m", "twin", "viz", "--replay", str(path), "--no-open"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for path in (older, tmp_path)
    ]
    # Assert
    for proc in procs:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "telemetry.parquet" in procs[0].stderr and "not a run directory" in procs[1].stderr


def test_a_users_own_scenario_is_replayed_given_its_file(tmp_path: Path) -> None:
    """A run of a scenario registered by a user's file replays once that file is named (and is refused,
    in one line, by a process that does not know the name)."""
    # Prepare
    run = twin.run(str(EXAMPLE), seed=1, until=6, overrides={"bus.telemetry_interval_s": 2}, out=tmp_path)
    # Execute
    replay = ReplayScenario(load_replay(run.run_dir, str(EXAMPLE)))
    replay.seek(replay.end_s)
    unknown = subprocess.run(
        [sys.executable, "-m", "twin", "viz", "--replay", str(run.run_dir), "--no-open"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Assert
    assert replay.scenario_name == run.scenario and replay.twin.devices
    assert unknown.returncode == 2 and "my_usecase.py --replay" in unknown.stderr
    with pytest.raises(TwinError, match="not"):
        load_replay(run.run_dir, "home-health")


@pytest.mark.parametrize("scenario", agent_scenarios())
def test_every_agent_scenario_replays(tmp_path: Path, scenario: str) -> None:
    """A short run of every agent scenario replays: agents at the end, the map and the plots drawn."""
    # Prepare
    run_dir = twin.run(
        scenario,
        seed=1,
        until=6,
        overrides={**small_overrides(scenario), "bus.telemetry_interval_s": 2},
        out=tmp_path,
    ).run_dir
    # Execute
    replay = ReplayScenario(load_replay(run_dir))
    replay.seek(replay.end_s)
    png = ReplayMapRenderer(replay).frame_png()
    plots = [figure_png(build(replay)) for build in PLOTS.values()]
    # Assert
    assert replay.twin.devices and png.startswith(b"\x89PNG") and len(plots) == 4


@pytest.mark.browser
def test_replay_page_in_chromium(run_dir: Path, tmp_path: Path, chromium: str) -> None:
    """Headless Chromium opens ``twin viz --replay``: the map and the four plots are there, and moving the
    time slider (keyboard: End) moves the replay to the end of the run and redraws the map."""
    # Prepare
    import os
    import signal
    import socket

    from playwright.sync_api import sync_playwright

    from twin.viz import assets

    if assets.missing_packages():
        if os.environ.get("TWIN_REQUIRE_BROWSER") == "1":
            pytest.fail("TWIN_REQUIRE_BROWSER=1 but Solara's front end is not installed")
        pytest.skip("Solara's front end is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    end = int(ReplayScenario(load_replay(run_dir)).end_s)
    command = [
        sys.executable,
        "-m",
        "twin",
        "viz",
        "--replay",
        str(run_dir),
        "--no-open",
        "--port",
        str(port),
    ]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1600})
                deadline = time.monotonic() + 60
                while True:
                    try:
                        page.goto(f"http://127.0.0.1:{port}")
                        break
                    except Exception:  # the server is not listening yet
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                page.get_by_text("replay time 0 s", exact=False).wait_for(timeout=60_000)
                map_image = page.locator(".twin-map img")
                plot_count = page.locator(".twin-plot img").count()
                before = map_image.screenshot()
                # Execute
                page.locator(".twin-replay-controls [role=slider]").first.focus()
                page.keyboard.press("End")
                page.get_by_text(f"replay time {end} s", exact=False).wait_for(timeout=30_000)
                page.wait_for_timeout(2500)  # a frame held back by the FrameGate is drawn within 2 s
                after = map_image.screenshot()
                qoais = page.locator(".twin-qoais").inner_text()
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        log.close()
    # Assert
    assert plot_count == 4
    assert after != before
    assert "pending" not in qoais and ("PASS" in qoais or "FAIL" in qoais)
