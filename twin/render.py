"""Terminal rendering of results (rich tables): calculation results, QoAIS summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table

from twin.qoais import ServiceReport
from usecases.registry import CalculationResult


def qoais_table(reports: Sequence[ServiceReport]) -> Table:
    """One line per indicator: achieved vs target, met or not; the title names the limiting factor."""
    table = Table(title="QoAIS", box=None, title_justify="left")
    for name in ("service", "indicator", "achieved", "target", "met"):
        table.add_column(name, justify="right" if name in ("achieved", "target") else "left")
    for report in reports:
        for i in report.indicators:
            op = {"min": "≥", "max": "≤", "level": "≥", "mode": "∈"}[i.comparator]
            met = "[green]yes[/green]" if i.passed else "[red]no[/red]"
            table.add_row(report.service, f"{i.dimension}.{i.name}", _fmt(i.achieved) + i.unit,
                          f"{op} {_fmt(i.target)}{i.unit}", met)  # fmt: skip
        colour = "green" if report.passed else ("red" if report.verdict == "FAIL" else "yellow")
        verdict = f"[{colour}]{report.verdict}[/{colour}]"
        table.add_row(report.service, f"→ {verdict}", "", "", "")
        table.add_row("", f"[dim]limiting: {report.limiting_factor}[/dim]", "", "", "")
    return table


def calculation_tables(result: CalculationResult) -> list[Table]:
    """The computed table next to the paper's values, plus highlights."""
    paper = {(c.row, c.column): c for c in result.comparison}
    tables: list[Table] = []
    if len(result.rows) > 1:
        table = Table(
            title=result.title,
            box=None,
            title_justify="left",
            caption="each cell: ours, then the paper's value and our difference (red: outside tolerance)",
            caption_justify="left",
        )
        table.add_column("metric", no_wrap=True)
        for row in result.rows:
            table.add_column(_row_header(row), justify="right")
        for column in result.columns:
            if column == "split_point":
                continue
            cells = []
            for row in result.rows:
                cell = _fmt(row[column])
                compared = paper.get((_row_key(row), column))
                if compared is not None and compared.paper is not None:
                    colour = "dim" if compared.within_tolerance else "red"
                    cell += f"\n[{colour}]{_fmt(compared.paper)} {compared.diff:+.2f}[/{colour}]"
                cells.append(cell)
            table.add_row(column, *cells)
        tables.append(table)
    else:
        table = Table(title=result.title, box=None, title_justify="left")
        for name in ("KPI", "ours", "paper", "diff", "within tolerance"):
            table.add_column(name, justify="left" if name == "KPI" else "right")
        for column in result.columns:
            compared = next((c for c in result.comparison if c.column == column), None)
            ours = _fmt(result.rows[0][column])
            if compared is None:
                table.add_row(column, ours, "—", "—", "—")
            else:
                ok = "[green]yes[/green]" if compared.within_tolerance else "[red]no[/red]"
                table.add_row(column, ours, _fmt(compared.paper or 0.0), f"{compared.diff or 0.0:+.4g}", ok)
        tables.append(table)
    highlights = Table(box=None, show_header=False)
    for key, value in result.highlights.items():
        highlights.add_row(key, _fmt(value))
    if not result.inputs_match_paper:
        highlights.add_row("note", "inputs differ from the paper's: differences are expected")
    tables.append(highlights)
    return tables


def _row_key(row: Mapping[str, object]) -> str:
    """A row's name in the comparison: its ``row`` label if it has one, else its split point (Table 3-13)."""
    return str(row["row"]) if "row" in row else str(int(float(str(row["split_point"]))))


def _row_header(row: Mapping[str, object]) -> str:
    return str(row["row"]) if "row" in row else f"split {_row_key(row)}"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value == int(value) and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.4g}" if abs(value) >= 1e12 or abs(value) < 1e-2 else f"{value:.2f}"
    return str(value)
