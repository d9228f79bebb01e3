"""The page in a real browser: Debian's Chromium, driven by Playwright (no browser download).

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and Solara's front end in its local cache
(``python -m twin.viz.assets``, which needs npm). Without them the test is skipped, unless
``TWIN_REQUIRE_BROWSER=1`` (CI) makes it fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from twin.viz import assets

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("TWIN_CHROMIUM", "/usr/bin/chromium")


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("TWIN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TWIN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_ports(root: psutil.Process) -> set[int]:
    """TCP ports the server (the CLI and its ``solara run`` child) listens on."""
    ports = set()
    for process in [root, *root.children(recursive=True)]:
        for conn in process.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                ports.add(conn.laddr.port)
    return ports


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """``twin viz home-health`` serving a small world on a free port, stopped with Ctrl-C afterwards."""
    _need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}")
    _need(not assets.missing_packages(), "Solara's front end is not installed (python -m twin.viz.assets)")
    port = _free_port()
    small = ["--set", "devices.count=12", "--set", "fl.rounds=3", "--set", "devices.test_households=10"]
    command = [sys.executable, "-m", "twin", "viz", "home-health", "--no-open", "--port", str(port), *small]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        root = psutil.Process(process.pid)
        _wait(lambda: port in _listening_ports(root), 60, "the server to listen")
        yield f"http://127.0.0.1:{port}", root
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        log.close()


def test_step_redraws_map_and_plot_and_closing_the_tab_stops_the_broker(
    server: tuple[str, psutil.Process],
) -> None:
    """Chromium loads the page; sliders show their values; Step advances the run and changes the map and the
    energy plot; leaving the page closes its run, so the embedded broker stops listening."""
    # Prepare
    from playwright.sync_api import sync_playwright

    url, root = server
    http_port = int(url.rsplit(":", 1)[1])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.goto(url)
            map_image = page.locator(".twin-map img")
            energy_image = page.locator(".twin-plot-energy img")
            page.get_by_text("simulated time 0 s").wait_for(timeout=60_000)
            devices_slider = page.locator(".v-slider-thumb__label", has_text="12")
            slider_values = page.locator(".v-slider-thumb__label").all_inner_texts()
            devices_value_shown = devices_slider.first.is_visible()
            map_before, energy_before = map_image.screenshot(), energy_image.screenshot()
            broker_ports = _listening_ports(root) - {http_port}
            # Execute
            page.get_by_role("button", name="Step").click()
            page.get_by_text("simulated time 1 s").wait_for(timeout=30_000)
            page.get_by_role("button", name="Step").click()
            page.get_by_text("simulated time 2 s").wait_for(timeout=30_000)
            page.wait_for_timeout(2500)  # a step drawn late (FrameGate) is drawn within 2 s
            map_after, energy_after = map_image.screenshot(), energy_image.screenshot()
            page.goto("about:blank")
            # Assert
            assert devices_value_shown and len(slider_values) >= 5  # every slider shows its value
            assert map_after != map_before
            assert energy_after != energy_before
            assert len(broker_ports) == 1
            _wait(lambda: _listening_ports(root) == {http_port}, 30, "the page's broker to stop")
        finally:
            browser.close()
