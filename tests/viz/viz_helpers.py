"""Helpers of the visualisation tests: small scenario settings and the threads a run owns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import ipyvuetify as v
import ipywidgets

from twin.config import flatten
from usecases import registry
from usecases.registry import AgentScenario

# Keep the worlds small so that a step (and a federated round) is quick.
SMALL = {
    "devices.count": "8",
    "fl.rounds": "3",
    "devices.test_households": "10",
    "devices.test_samples": "200",
}


def small_overrides(scenario: str) -> dict[str, str]:
    """The :data:`SMALL` settings that ``scenario``'s config has (none for an unknown scenario)."""
    if scenario not in registry.names():
        return {}
    keys = flatten(registry.get(scenario).default_config())
    return {k: v for k, v in SMALL.items() if k in keys}


def agent_scenarios() -> list[str]:
    """Every registered agent (Mesa) scenario."""
    return [n for n in registry.names() if isinstance(registry.get(n), AgentScenario)]


def _broker_processes() -> set[int]:
    """Pids of this process's live embedded-broker children (the broker runs in its own process)."""
    import psutil

    pids: set[int] = set()
    for child in psutil.Process().children(recursive=False):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "broker.embedded_server" in " ".join(
                child.cmdline()
            ):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


class RunThreads:
    """What runs own, started since a baseline: paho's network threads and embedded-broker processes.

    A broker process is listed as ``twin-embedded-broker``.
    """

    def __init__(self) -> None:
        self.baseline = set(threading.enumerate())
        self.baseline_brokers = _broker_processes()

    def __call__(self) -> list[str]:
        """Names of the run threads (and ``twin-embedded-broker`` per broker process) since the baseline."""
        threads = [
            t.name
            for t in threading.enumerate()
            if t not in self.baseline and t.name.startswith("paho-mqtt-client")
        ]
        brokers = ["twin-embedded-broker"] * len(_broker_processes() - self.baseline_brokers)
        return sorted(threads + brokers)

    def wait_until_gone(self, timeout_s: float = 10.0) -> list[str]:
        """Wait until none is left (threads end shortly after their close); return those still there."""
        deadline = time.monotonic() + timeout_s
        while self() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self()


# ---- the page rendered headlessly (solara.render): its widgets ----------------------------------------
def widgets(rc: Any) -> Iterator[ipywidgets.Widget]:
    """Every widget on the page, the main area and the sidebar (which reacton's finder does not reach)."""
    seen: set[int] = set()
    todo: list[Any] = [rc.container]
    while todo:
        widget = todo.pop()
        if not isinstance(widget, ipywidgets.Widget) or id(widget) in seen:
            continue
        seen.add(id(widget))
        yield widget
        children = getattr(widget, "children", None)
        todo += list(children) if isinstance(children, list | tuple) else [children]
        todo += [s.get("children") for s in getattr(widget, "v_slots", None) or []]


def texts(rc: Any) -> str:
    """Every text shown on the page (text children of its widgets)."""
    found = [getattr(w, "children", None) for w in widgets(rc)]
    return "\n".join(
        c for children in found if isinstance(children, list) for c in children if isinstance(c, str)
    )


def html(rc: Any) -> str:
    """Every piece of raw HTML on the page."""
    return " ".join(str(w.unsafe_innerHTML) for w in widgets(rc) if getattr(w, "unsafe_innerHTML", ""))


def image(rc: Any, css_class: str) -> bytes:
    """The PNG shown in the element with ``css_class``."""
    (holder,) = [w for w in widgets(rc) if css_class in str(getattr(w, "class_", "")).split()]
    (shown,) = [w for w in _below(holder) if isinstance(w, ipywidgets.Image)]
    return bytes(shown.value)


def _below(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", None) or []:
        yield from _below(child)


def click(rc: Any, label: str) -> None:
    (button,) = [w for w in widgets(rc) if isinstance(w, v.Btn) and w.children == [label]]
    button.click()
