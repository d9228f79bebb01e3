"""``twin report``: a self-contained HTML page of a run; checked as text and in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.errors import ConfigError
from twin.report import DEVICES_UNKNOWN_KIND, energy_breakdown, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_embeds_its_plots_and_writes_them_beside(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "site" / "run.html"
    report = write_report(two_runs[0], out)
    page = out.read_text()
    assert [p.name for p in report.plots] == ["run-kpi.png", "run-energy.png", "run-coverage.png"]
    embedded = _embedded_pngs(page)
    assert embedded == [p.read_bytes() for p in report.plots]  # the same images, inline
    assert all(png.startswith(PNG) for png in embedded)
    assert report.notes == []
    assert "<script" not in page and "http" not in page.split("</style>")[0]  # nothing fetched
    qoais = json.loads((two_runs[0] / "qoais.json").read_text())["services"]
    table = page.split('<table id="qoais"', 1)[1].split("</table>", 1)[0]
    for service in qoais:
        assert f"<b>{service['verdict']}</b>" in table
        for indicator in service["indicators"]:
            assert f"{indicator['dimension']}.{indicator['name']}" in table
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    assert set(summary["energy_by_kind_j"]) == {"home-health", "network"}
    assert sum(summary["energy_by_kind_j"].values()) == pytest.approx(summary["final"]["energy_total_j"])
    assert sum(summary["energy_by_service_j"].values()) == pytest.approx(summary["final"]["energy_total_j"])


def test_report_of_an_older_run_says_what_is_missing(two_runs: list[Path], tmp_path: Path) -> None:
    old = tmp_path / "old-run"
    shutil.copytree(two_runs[1], old)
    (old / "coverage.parquet").unlink()
    summary = json.loads((old / "summary.json").read_text())
    del summary["energy_by_kind_j"], summary["energy_by_service_j"]
    (old / "summary.json").write_text(json.dumps(summary))
    report = write_report(old)
    assert report.html_path == old / "report.html"
    assert [p.name for p in report.plots] == ["report-kpi.png", "report-energy.png"]
    assert any("coverage.parquet" in n for n in report.notes)
    assert any("energy by service: not recorded" in n for n in report.notes)
    page = report.html_path.read_text()
    assert "energy by service: not recorded" in page and "no coverage.parquet" in page
    by_kind, by_service, _ = energy_breakdown(summary)
    assert by_kind["network"] == summary["energy_by_agent_j"]["network"]
    devices = sum(j for a, j in summary["energy_by_agent_j"].items() if a != "network")
    assert by_kind[DEVICES_UNKNOWN_KIND] == pytest.approx(devices) and by_service == {}


def test_report_cli(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(two_runs[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.stdout and out.is_file()
    with pytest.raises(ConfigError, match="summary.json"):
        write_report(tmp_path)


@pytest.mark.browser
def test_report_opens_in_chromium_with_its_plots_and_qoais_table(
    two_runs: list[Path], tmp_path: Path, chromium: str
) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    write_report(two_runs[0], out)
    for png in tmp_path.glob("*.png"):
        png.unlink()  # the page must stand alone
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all(
                "img.plot", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            classes = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.className)")
            rows = page.locator("#qoais tbody tr")
            verdicts = page.locator("#qoais tr.verdict").all_inner_texts()
            header = page.locator("#qoais thead th").all_inner_texts()
            row_count = rows.count()
        finally:
            browser.close()
    assert classes == ["plot kpi", "plot energy", "plot coverage"]
    assert len(widths) == 3 and all(w > 100 for w in widths), widths
    assert header == ["service", "indicator", "achieved", "target", "met"]
    services = json.loads((two_runs[0] / "qoais.json").read_text())["services"]
    assert row_count == sum(len(s["indicators"]) + 1 for s in services)
    assert [v.split()[0] for v in verdicts] == [s["service"] for s in services]
