"""``twin watch``: a live console view of a run built from its MQTT stream alone.

It needs nothing but the broker the run publishes to, so it works for a run on another machine.
It subscribes to the run's telemetry (``twin/v1/{run_id}/…``, model traffic left out), shows the
retained meta and status, the latest KPIs, agents by kind and state and the latest events, and
returns when the status becomes final (``finished``, ``stopped`` or ``aborted``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from broker.bus import Bus
from broker.mqtt_bus import MqttBus
from broker.topics import check_segment
from broker.url import parse_broker_url
from twin.errors import BrokerUnreachableError, ConfigError, PayloadError, RunAbortedError, TwinError
from twin.metrics import MetricsExporter
from twin.telemetry import FINAL_STATUSES, TelemetryMessage, parse_message, subscription_filters

EVENT_TAIL = 8
HEADLINE_KPIS = (
    "accuracy",
    "service_accuracy",
    "coverage",
    "round_latency_s",
    "accepted",
    "stragglers",
    "offline",
    "energy_round_j",
    "energy_total_j",
    "co2_total_g",
)


@dataclass(slots=True)
class RunView:
    """What the stream has told about one run so far (no I/O: feed it with :meth:`apply`)."""

    run_id: str
    meta: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    last_kpi: dict[str, Any] | None = None
    kpi_records: int = 0
    telemetry_samples: int = 0
    rejected: int = 0
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_TAIL))
    event_counts: Counter[str] = field(default_factory=Counter)

    def apply(self, message: TelemetryMessage) -> None:
        """Take one message of this run into account (messages of other runs are ignored)."""
        if message.run_id != self.run_id:
            return
        document = message.document
        if message.message_type == "meta":
            self.meta = document
        elif message.message_type == "status":
            self.status = document
        elif message.message_type == "kpi":
            self.last_kpi = document
            self.kpi_records += 1
        elif message.message_type == "telemetry":
            self.telemetry_samples += 1
            self.agents[str(message.agent_id)] = (str(message.kind), str(document.get("state", "—")))
        elif message.message_type == "event":
            self.events.append(document)
            self.event_counts[str(document.get("event"))] += 1

    @property
    def status_name(self) -> str:
        """The latest status, or ``waiting`` before any arrived."""
        return str(self.status["status"]) if self.status else "waiting"

    @property
    def final(self) -> bool:
        """Whether the run has ended (nothing more will come)."""
        return self.status_name in FINAL_STATUSES

    def agent_counts(self) -> dict[str, Counter[str]]:
        """Agents seen in telemetry: kind → state → count."""
        counts: dict[str, Counter[str]] = {}
        for kind, state in self.agents.values():
            counts.setdefault(kind, Counter())[state] += 1
        return counts


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def render_view(view: RunView) -> RenderableType:
    """The console view of a run: header, latest KPIs, agents by state, event tail."""
    meta = view.meta or {}
    status = view.status or {}
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    style = {"running": "green", "finished": "bold green", "aborted": "bold red"}.get(
        view.status_name, "yellow"
    )
    header.add_row("run", view.run_id)
    header.add_row("scenario", str(meta.get("scenario", status.get("scenario", "—"))))
    header.add_row(
        "status", f"[{style}]{view.status_name}[/]" + (f" — {status['error']}" if "error" in status else "")
    )
    if meta:
        header.add_row(
            "seed · devices · base stations",
            f"{meta.get('seed')} · {meta.get('devices')} · {meta.get('base_stations')}",
        )
        header.add_row("broker (run side)", str(meta.get("broker")))
    kpi = view.last_kpi or {}
    sim_time_s = kpi.get("sim_time_s", status.get("sim_time_s"))
    rounds = f"{kpi.get('round', status.get('rounds_completed', 0))}/{meta.get('rounds_limit') or '?'}"
    header.add_row("round · simulated time", f"{rounds} · {_number(sim_time_s)} s")
    header.add_row(
        "messages",
        f"{view.kpi_records} KPI records, {view.telemetry_samples} telemetry samples, "
        f"{sum(view.event_counts.values())} events, {view.rejected} rejected",
    )
    parts: list[RenderableType] = [header]
    if kpi:
        kpis = Table(title="latest KPIs", box=None, title_justify="left")
        kpis.add_column("KPI")
        kpis.add_column("value", justify="right")
        for key in HEADLINE_KPIS:
            if key in kpi:
                kpis.add_row(key, _number(kpi[key]))
        parts.append(kpis)
    counts = view.agent_counts()
    if counts:
        agents = Table(title="agents by state (latest telemetry)", box=None, title_justify="left")
        agents.add_column("kind")
        agents.add_column("states")
        for kind in sorted(counts):
            agents.add_row(kind, ", ".join(f"{state} {n}" for state, n in sorted(counts[kind].items())))
        parts.append(agents)
    if view.events:
        events = Table(title="latest events", box=None, title_justify="left")
        for column in ("t (s)", "agent", "event", "round"):
            events.add_column(column)
        for event in view.events:
            events.add_row(
                _number(event.get("sim_time_s")),
                str(event.get("agent_id")),
                str(event.get("event")),
                _number(event.get("round")),
            )
        parts.append(events)
    return Group(*parts)


def connect(broker: str, *, connect_timeout_s: float = 10.0) -> MqttBus:
    """A client of the broker a run publishes to (``embedded`` is refused: it lives inside its run).

    Raises:
        ConfigError: ``embedded``/``local`` or a malformed URL.
        BrokerUnreachableError: nothing accepted the connection.
    """
    if broker in ("embedded", "local"):
        raise ConfigError(
            f"--broker {broker!r}: twin watch needs the URL of the broker the run publishes to; an"
            " embedded broker lives inside its run, so start `twin broker` and point both the run and"
            " twin watch at it (--broker mqtt://127.0.0.1:1883)"
        )
    return MqttBus(parse_broker_url(broker), connect_timeout_s=connect_timeout_s)


def subscribe_run(bus: Bus, run_id: str) -> None:
    """Subscribe ``bus`` to the telemetry of one run (meta, status, KPIs, agents' telemetry and events)."""
    for topic_filter in subscription_filters(run_id):
        bus.subscribe(topic_filter)


def follow(
    bus: Bus,
    view: RunView,
    *,
    on_update: Callable[[RunView], None] | None = None,
    timeout_s: float | None = None,
    poll_s: float = 0.25,
    metrics: MetricsExporter | None = None,
) -> RunView:
    """Feed ``view`` from ``bus`` until the run's status is final.

    Args:
        bus: a connected bus, subscribed to the run's telemetry (:func:`subscribe_run`).
        view: the view to update.
        on_update: called with the view after each batch of messages.
        timeout_s: give up after this long without a message (``None``: wait for ever).
        poll_s: longest wait for messages between updates.
        metrics: also feed these Prometheus metrics.

    Raises:
        TwinError: no message within ``timeout_s``.
        BrokerUnreachableError: the broker went away for longer than its reconnect timeout.
    """
    last_message = time.monotonic()
    while not view.final:
        messages = bus.poll(poll_s)
        for received in messages:
            try:
                message = parse_message(received.topic, received.payload)
            except PayloadError:
                view.rejected += 1
                continue
            if message is not None:
                view.apply(message)
                if metrics is not None:
                    metrics.observe(message.message_type, message.document)
        now = time.monotonic()
        if messages:
            last_message = now
        elif timeout_s is not None and now - last_message > timeout_s:
            raise TwinError(
                f"no message of run {view.run_id!r} on {bus.url} for {timeout_s:g} s"
                " (check the run id and that the run publishes to this broker)"
            )
        try:
            bus.check()
        except RunAbortedError as exc:
            raise BrokerUnreachableError(
                f"MQTT broker {bus.url} gone; stopped watching {view.run_id}"
            ) from exc
        if on_update is not None:
            on_update(view)
    return view


def watch_run(
    run_id: str,
    broker: str,
    *,
    console: Console | None = None,
    timeout_s: float | None = None,
    metrics: MetricsExporter | None = None,
    on_subscribed: Callable[[str], None] | None = None,
) -> RunView:
    """Show a run live on ``console`` until it ends; returns what was seen.

    ``on_subscribed`` is told the broker's URL once the subscriptions are in place.

    Raises:
        ConfigError: bad run id or broker URL.
        BrokerUnreachableError: the broker cannot be reached, or went away.
        TwinError: no message within ``timeout_s``.
    """
    try:
        check_segment(run_id, "run id")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    view = RunView(run_id)
    bus = connect(broker)
    try:
        subscribe_run(bus, run_id)
        if on_subscribed is not None:
            on_subscribed(bus.url)
        with Live(render_view(view), console=console, auto_refresh=False, transient=False) as live:
            follow(
                bus,
                view,
                on_update=lambda v: live.update(render_view(v), refresh=True),
                timeout_s=timeout_s,
                metrics=metrics,
            )
        if not live.console.is_terminal:
            live.console.line()
    finally:
        bus.close()
    return view
