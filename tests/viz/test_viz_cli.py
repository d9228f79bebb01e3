import subprocess
import sys

import pytest

from twin.cli_viz import solara_command


def twin_viz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", "viz", *args, "--no-open"], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["no-such-scenario"], "no-such-scenario"),
        (["home-health", "--set", "fl.rounds=many"], "fl.rounds"),
        (["home-health", "--seed", "-1"], "--seed"),
        (["home-health", "--port", "70000"], "--port"),
        (["home-health", "--broker", "http://x"], "--broker"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(args: list[str], named: str) -> None:
    """A bad scenario, setting, seed, port or broker is refused before serving: one line, exit code 2."""
    # Execute
    proc = twin_viz(*args)
    # Assert
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1 and named in lines[0]


def test_serves_the_app_with_solara_run() -> None:
    """The page is served by ``solara run twin.viz.app`` with the host, port and --open choice passed on."""
    # Execute
    command = solara_command(host="0.0.0.0", port=9000, open_browser=False)
    # Assert
    assert command[:5] == [sys.executable, "-m", "solara", "run", "twin.viz.app"]
    assert command[5:9] == ["--host", "0.0.0.0", "--port", "9000"] and "--no-open" in command
    assert "--open" in solara_command(host="localhost", port=8765, open_browser=True)
