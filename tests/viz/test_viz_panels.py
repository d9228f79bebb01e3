import math
from types import SimpleNamespace

from viz_helpers import small_overrides

from twin.progress import run_progress
from twin.qoais import Indicator, ServiceReport
from twin.viz.live import LiveScenario
from twin.viz.map import CoverageMapRenderer
from twin.viz.panels import format_value, qoais_html, status_lines, verdict_shown


def test_format_value() -> None:
    """QoAIS figures: integers plain, others to 4 significant digits, NaN as n/a, units appended."""
    # Execute / Assert
    assert format_value(3.0, " s") == "3 s"
    assert format_value(0.123456) == "0.1235"
    assert format_value(math.nan) == "n/a"
    assert format_value("full, partial") == "full, partial"


def test_qoais_html_marks_each_target() -> None:
    """Each indicator shows achieved vs target and met/missed; the verdict and limiting factor are named."""
    # Prepare
    report = ServiceReport(
        "<alerts>",
        "two-stage inference",
        (
            Indicator("performance", "service_accuracy", 0.9, 0.85, "", "min"),
            Indicator("performance", "response_latency_p95", 0.4, 0.2, " s", "max", "detail <b>"),
        ),
    )
    # Execute
    text = qoais_html([report])
    # Assert
    assert "&lt;alerts&gt;" in text and "FAIL" in text and "<b>" not in text.split("</b>", 2)[-1]
    assert "≥ 0.85" in text and "≤ 0.2 s" in text and text.count("✔") == 1 and text.count("✘") == 1
    assert "limiting: performance.response_latency_p95" in text
    assert "No service" in qoais_html([])


def test_status_lines_describe_the_run() -> None:
    """The status names the run, seed, time, round, device states and MQTT traffic; a failure says so."""
    # Prepare
    live = LiveScenario(scenario_name="home-health", seed=5, **small_overrides("home-health"))
    try:
        live.step()
        # Execute
        lines = status_lines(live)
    finally:
        live.close()
    # Assert
    text = "\n".join(lines)
    assert live.run_id in text and "seed 5" in text and "simulated time 1 s" in text
    assert "federated round 0/3" in text and "8 devices" in text and "MQTT mqtt://127.0.0.1:" in text
    failed = LiveScenario(scenario_name="no-such-scenario")
    assert status_lines(failed) == ["scenario no-such-scenario: could not start"]


def test_nothing_assessed_is_pending_never_pass() -> None:
    """Before any round or request the panel says pending (grey), not PASS; a verdict mid-run holds so far."""
    # Prepare
    live = LiveScenario(scenario_name="home-health", seed=5, **small_overrides("home-health"))
    try:
        reports = live.qoais_reports()
        running = live.status == "running"
        # Execute
        text = qoais_html(reports, running=running)
    finally:
        live.close()
    met = ServiceReport(
        "alerts", "two-stage inference", (Indicator("performance", "a", 0.9, 0.8, "", "min"),)
    )
    # Assert
    assert running and len(reports) == 2 and all(not r.indicators for r in reports)
    assert text.count(">pending</b>") == 2 and "PASS" not in text and "FAIL" not in text
    assert verdict_shown(met, running=True) == ("#2e7d32", "PASS so far")
    assert verdict_shown(met, running=False) == ("#2e7d32", "PASS")
    assert verdict_shown(reports[0], running=False)[1] == "not assessed"
    aborted = ServiceReport("alerts", "two-stage inference", met.indicators, incomplete="aborted")
    assert verdict_shown(aborted, running=True)[1] == "incomplete (aborted)"


def test_a_run_in_ticks_shows_its_ticks_not_a_limit_of_none() -> None:
    """disease-diagnosis has no rounds limit: status and map title count its ticks, as ``twin run``."""
    # Prepare: a small run of 5 ticks, one a second from t = 2 s
    small = "devices.count=20; cascade.ticks=5; cascade.start_s=2; cascade.interval_s=1"
    live = LiveScenario(scenario_name="disease-diagnosis", seed=5, overrides=small)
    try:
        assert live.error is None and live.twin is not None and live.twin.rounds_limit is None
        for _ in range(4):
            live.step()
        # Execute
        progress = run_progress(live.twin)
        text = "\n".join(status_lines(live))
        title = CoverageMapRenderer(live).title()
    finally:
        live.close()
    # Assert
    assert progress.unit == "tick" and (progress.done, progress.total) == (3, 5)
    assert f"tick 3/5 · federated round {progress.rounds}" in text
    assert f"tick 3/5 · round {progress.rounds}" in title
    assert "None" not in text and "None" not in title


def test_run_progress_counts_rounds_without_a_ticked_service() -> None:
    """Without a service in ticks, progress is the network's rounds against the rounds limit (or none)."""
    # Prepare
    network = SimpleNamespace(rounds_done=2)
    model = SimpleNamespace(services=[object()], network=network, kpi_rows=[{}, {}], rounds_limit=5)
    # Execute
    limited = run_progress(model)
    unlimited = run_progress(SimpleNamespace(**{**vars(model), "rounds_limit": None}))
    # Assert
    assert (limited.unit, limited.done, limited.total, limited.text()) == ("round", 2, 5, "round 2/5")
    assert unlimited.text(round_word="federated round") == "federated round 2"
