"""The page of a calculation scenario: its parameters editable, its result table, a plot and its QoAIS.

A calculation scenario has no agents and no clock, so it is not a Mesa model: every parameter is a
text input (the same dotted keys and values as ``--set``) and the result is recomputed when one
changes. A value that does not validate is shown as an error next to the last good result.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import solara
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from twin.config import apply_overrides, flatten
from twin.errors import TwinError
from twin.viz.panels import PAGE_CSS, format_value, qoais_html
from usecases.beam_orchestration_data import ClassGridExample
from usecases.registry import CalculationResult, CalculationScenario


def config_texts(config: Any) -> dict[str, str]:
    """Every field of ``config`` as the text a user would type after ``--set key=``."""

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, tuple | list):
            return ", ".join(str(v) for v in value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {k: text(v) for k, v in flatten(config).items()}


def compute(spec: CalculationScenario, texts: Mapping[str, str]) -> CalculationResult:
    """The scenario's result for the parameters typed in ``texts`` (only the edited ones are applied).

    Raises:
        TwinError: a value that does not validate (ConfigError) or a failing calculation.
    """
    config = spec.default_config()
    defaults = config_texts(config)
    edited = {k: v for k, v in texts.items() if defaults.get(k) != v}
    return spec.compute(apply_overrides(config, edited))


def result_table_html(result: CalculationResult) -> str:
    """The result rows as an HTML table (one column per row when there are several, as in the paper)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{format_value(float(row[c]))}</td>" for c in result.columns) + "</tr>"
        for row in result.rows
    )
    return f'<table class="twin-qoais-table twin-result">{"<tr>" + head + "</tr>"}{body}</table>'


def comparison_html(result: CalculationResult) -> str:
    """Our values next to the paper's, with the difference and whether it is within tolerance."""
    rows = []
    for c in result.comparison:
        if c.paper is None:
            continue
        ok = "✔" if c.within_tolerance else "✘"
        cells = (
            c.row,
            c.column,
            format_value(c.ours),
            format_value(c.paper),
            format_value(c.diff or 0.0),
            ok,
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
    head = "<tr><th>row</th><th>column</th><th>ours</th><th>paper</th><th>diff</th><th>ok</th></tr>"
    return f'<table class="twin-qoais-table">{head}{"".join(rows)}</table>'


def result_figure(result: CalculationResult, column: str) -> Figure:
    """``column`` across the result rows (with the paper's values), or, for one row, ours ÷ paper."""
    figure = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = figure.add_subplot()
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    first = result.columns[0]
    if len(result.rows) > 1:
        x = [float(r[first]) for r in result.rows]
        ax.plot(x, [float(r[column]) for r in result.rows], "o-", lw=1.2, label="ours")
        paper = {c.row: c.paper for c in result.comparison if c.column == column and c.paper is not None}
        points = [(v, paper[_row_label(v)]) for v in x if _row_label(v) in paper]
        if points:
            ax.plot(*zip(*points, strict=True), "x", ms=8, color="#d62728", label="paper")
        ax.set_xlabel(first, fontsize=8)
        ax.set_ylabel(column, fontsize=8)
        ax.set_title(f"{column} by {first}", fontsize=10)
        ax.legend(fontsize=7)
    else:
        compared = [c for c in result.comparison if c.paper]
        names = [c.column for c in compared]
        ratios = [c.ours / c.paper for c in compared if c.paper]
        ax.barh(names, ratios, color="#1f77b4")
        ax.axvline(1.0, color="#d62728", linestyle="--", linewidth=1.0)
        ax.set_xlabel("ours ÷ paper", fontsize=8)
        ax.set_title("Agreement with the paper", fontsize=10)
    return figure


def grid_examples(result: CalculationResult) -> dict[str, ClassGridExample]:
    """The example class grids a result keeps (label: example), none for most calculations."""
    examples = result.extras.get("grid_examples", {})
    return {k: v for k, v in examples.items() if isinstance(v, ClassGridExample)}


def default_grid_example(labels: list[str]) -> str:
    """The example shown first: collaborative in the last setting, else the last one ("" when none)."""
    collaborative = [k for k in labels if k.startswith("collaborative")]
    return (collaborative or labels or [""])[-1]


def grid_figure(example: ClassGridExample) -> Figure:
    """True and predicted occupancy class per grid cell, side by side, with the base stations on both."""
    figure = Figure(figsize=(8.0, 3.9), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    labels = example.class_labels
    n = len(labels)
    cmap = ListedColormap(colormaps["YlOrRd"](np.linspace(0.0, 1.0, n)))
    norm = BoundaryNorm(np.arange(n + 1) - 0.5, cmap.N)
    rows, cols = example.true.shape
    extent = (0.0, cols * example.grid_m, 0.0, rows * example.grid_m)
    image = None
    titles = (
        f"true classes · window {example.window}",
        f"predicted ({example.orchestration}) · accuracy {100 * example.accuracy:.1f} %",
    )
    for ax, grid, title in zip(axes, (example.true, example.predicted), titles, strict=True):
        image = ax.imshow(grid, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest")
        if grid is example.predicted:
            r, c = np.nonzero(example.predicted != example.true)
            ax.plot((c + 0.5) * example.grid_m, (r + 0.5) * example.grid_m, "x", ms=3, color="#2b83ba")
        ax.scatter(
            example.site_xy_m[:, 0],
            example.site_xy_m[:, 1],
            marker="H",
            s=120,
            color="#1a1a1a",
            edgecolors="white",
            linewidths=1.2,
            zorder=3,
            label="base station",
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y (m)", fontsize=8)
    axes[1].legend(loc="upper right", fontsize=7, handles=axes[1].collections[:1])
    assert image is not None
    bar = figure.colorbar(image, ax=list(axes), ticks=np.arange(n), shrink=0.85)
    bar.ax.set_yticklabels([f"{label} users" for label in labels], fontsize=7)
    bar.set_label("occupancy class (× on the right: wrong)", fontsize=8)
    figure.suptitle(
        f"Predicted vs true user grid · {example.orchestration} @ "
        f"{example.dynamic_user_share_pct} % dynamic users",
        fontsize=10,
    )
    return figure


def default_plot_column(columns: list[str]) -> str:
    """The column plotted first: a latency, else an energy, else the first one ("" when none)."""
    for word in ("latency", "energy"):
        named = [c for c in columns if word in c]
        if named:
            return named[-1]
    return columns[0] if columns else ""


def _row_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@solara.component
def CalculationPage(spec: CalculationScenario, overrides: Mapping[str, str]) -> None:
    """Parameters in the sidebar; title, highlights, plot, result and paper tables, QoAIS in the main area."""
    initial = solara.use_memo(lambda: {**config_texts(spec.default_config()), **overrides}, dependencies=[])
    texts, set_texts = solara.use_state(initial)
    outcome = solara.use_memo(lambda: _try_compute(spec, texts), dependencies=[texts])
    no_result: CalculationResult | None = None
    last_good = solara.use_ref(no_result)
    if isinstance(outcome, CalculationResult):
        last_good.current = outcome
    result: CalculationResult | None = last_good.current
    column, set_column = solara.use_state("")
    example, set_example = solara.use_state("")

    with solara.AppBar():
        solara.AppBarTitle(f"aiaas-twin · {spec.name}")
    with solara.Sidebar(), solara.Card("Parameters"):
        solara.Button("Defaults", on_click=lambda: set_texts(initial), color="primary")
        for key, value in texts.items():
            solara.InputText(key, value=value, on_value=_setter(set_texts, key), continuous_update=False)
    solara.Style(PAGE_CSS)
    solara.Text(f"{spec.summary} (paper §{spec.paper_section})")
    if isinstance(outcome, str):
        solara.Error(outcome)
    if result is None:
        return
    numeric = list(result.columns[1:]) if len(result.rows) > 1 else []
    chosen = column if column in numeric else default_plot_column(numeric)
    with solara.Card(result.title, classes=["twin-calculation"]):
        solara.Text(", ".join(f"{k}: {_highlight(v)}" for k, v in result.highlights.items()))
        if numeric:
            solara.Select("plot", value=chosen, values=numeric, on_value=set_column)
        solara.FigureMatplotlib(result_figure(result, chosen), format="png")
        solara.HTML(tag="div", unsafe_innerHTML=result_table_html(result))
    examples = grid_examples(result)
    if examples:
        labels = list(examples)
        shown = example if example in examples else default_grid_example(labels)
        with solara.Card("Predicted vs true user grid"):
            solara.Select("orchestration @ setting", value=shown, values=labels, on_value=set_example)
            solara.FigureMatplotlib(grid_figure(examples[shown]), format="png")
    with solara.Card("QoAIS", classes=["twin-qoais"]):
        solara.HTML(tag="div", unsafe_innerHTML=qoais_html(result.qoais))
    with solara.Card("Compared with the paper"):
        solara.HTML(tag="div", unsafe_innerHTML=comparison_html(result))


def _setter(set_texts: Callable[..., None], key: str) -> Callable[[str], None]:
    """An input's handler: replace the text of ``key`` only (other edits of the same render are kept)."""

    def set_text(value: str) -> None:
        set_texts(lambda old: {**old, key: value})

    return set_text


def _highlight(value: Any) -> str:
    return format_value(value) if isinstance(value, float) else str(value)


def _try_compute(spec: CalculationScenario, texts: Mapping[str, str]) -> CalculationResult | str:
    try:
        return compute(spec, texts)
    except TwinError as exc:
        return str(exc)
