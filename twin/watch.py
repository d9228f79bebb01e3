"""``twin watch``: a live console view of a run built from its MQTT stream alone.

It needs nothing but the broker the run publishes to, so it works for a run on another machine.
It subscribes to the run's telemetry (``twin/v1/{run_id}/…``, model traffic left out) and its
services' ticks (``…/svc/+/tick``, for the progress of a run counted in ticks), shows the retained meta
and status, the progress (:func:`twin.progress.stream_progress`, as ``twin run``'s line), the latest
KPIs, agents by kind and state and the latest events, and returns when the status becomes final
(``finished``, ``stopped`` or ``aborted``).

Everything on the broker is untrusted: every message is checked against its schema before use (the
others are counted as rejected), every string is shown as text, never as console markup, and only a
status signed by the run (its ``auth``, by the key ``run_public_key`` of its meta) is taken. The key
comes from ``--key``, else from ``runs/<run_id>/run_key.pub`` when the run directory is here, else
from the first signed meta seen (trust on first use); a meta or status signed by another key is
counted as unauthenticated and ignored, so a spoofed ``finished`` cannot end the watch.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from broker.bus import Bus
from broker.json_codec import decode_json
from broker.mqtt_bus import MqttBus
from broker.topics import PREFIX, check_segment
from broker.url import parse_broker_url
from twin.errors import BrokerUnreachableError, ConfigError, PayloadError, RunAbortedError, TwinError
from twin.metrics import MetricsExporter
from twin.progress import RunProgress, stream_progress
from twin.schemas import load_schema
from twin.telemetry import (
    FINAL_STATUSES,
    MAX_MESSAGE_BYTES,
    RUN_KEY_FILE,
    TelemetryMessage,
    load_public_key,
    parse_message,
    schema_error,
    subscription_filters,
    verify_document,
)

FIND_TIMEOUT_S = 5.0
"""How long ``twin watch`` waits for anything of the run (its retained meta or status) before saying
the run is unknown."""
DISCOVERY_S = 2.0
"""Longest wait for the retained metas and statuses of a broker's runs (``twin runs``)."""
DISCOVERY_QUIET_S = 0.5
"""Retained messages come at once after subscribing: stop listening after this long without one."""
MAX_AGENTS = 1_000_000
MAX_EVENT_NAMES = 64
OTHER = "other"
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
    """What the stream has told about one run so far (no I/O: feed it with :meth:`apply`).

    Messages must come from :func:`~twin.telemetry.parse_message` (schema-checked). Metas and
    statuses count only when signed by the run's key: ``public_key`` when given, else the key read
    from ``key_file`` when it exists, else the key of the first meta signed by its own key (trust on
    first use). A status that arrives before any key is held back until one is known.
    """

    run_id: str
    meta: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    last_kpi: dict[str, Any] | None = None
    kpi_records: int = 0
    telemetry_samples: int = 0
    rejected: int = 0
    unauthenticated: int = 0
    """Metas and statuses ignored: not signed by the run's key (spoofed, or from another run)."""
    seen: int = 0
    """Valid messages of this run received (authenticated or not)."""
    public_key: bytes | None = None
    key_source: str | None = None
    key_file: Path | None = None
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_TAIL))
    event_counts: Counter[str] = field(default_factory=Counter)
    ticks_started: int | None = None
    """Ticks of the run's services seen (the latest tick index + 1); ``None``: no tick seen."""
    _pending_status: TelemetryMessage | None = None

    def apply(self, message: TelemetryMessage) -> list[TelemetryMessage]:
        """Take one message of this run into account; returns the messages it accepted.

        Messages of other runs are ignored. A meta or status not signed by the run's key is counted in
        :attr:`unauthenticated` and ignored; a held-back status is accepted along with the meta that
        brings the key.
        """
        if message.run_id != self.run_id:
            return []
        self.seen += 1
        document = message.document
        if message.message_type == "meta":
            return self._apply_meta(message)
        if message.message_type == "status":
            if self.public_key is None and not self._load_key_file():
                self._pending_status = message
                return []
            return self._apply_status(message)
        if message.message_type == "kpi":
            self.last_kpi = document
            self.kpi_records += 1
        elif message.message_type == "telemetry":
            self.telemetry_samples += 1
            agent = str(message.agent_id)
            if agent in self.agents or len(self.agents) < MAX_AGENTS:
                self.agents[agent] = (str(message.kind), str(document.get("state", "—")))
        elif message.message_type == "event":
            self.events.append(document)
            name = str(document.get("event"))
            if name not in self.event_counts and len(self.event_counts) >= MAX_EVENT_NAMES:
                name = OTHER
            self.event_counts[name] += 1
        return [message]

    def _topic(self, message: TelemetryMessage) -> str:
        return message.topic or f"{PREFIX}/{self.run_id}/{message.message_type}"

    def _load_key_file(self) -> bool:
        """Pin the key of ``key_file`` if it exists (a run directory here); whether a key is held."""
        if self.public_key is None and self.key_file is not None and self.key_file.is_file():
            try:
                self.public_key = load_public_key(self.key_file)
                self.key_source = str(self.key_file)
            except ConfigError:
                return False
        return self.public_key is not None

    def _apply_meta(self, message: TelemetryMessage) -> list[TelemetryMessage]:
        document = message.document
        topic = self._topic(message)
        if self.public_key is None and not self._load_key_file():
            offered = document.get("run_public_key")
            if isinstance(offered, str) and verify_document(document, topic, bytes.fromhex(offered)):
                self.public_key = bytes.fromhex(offered)
                self.key_source = "its first meta (trust on first use)"
        if self.public_key is None or not verify_document(document, topic, self.public_key):
            self.unauthenticated += 1
            return []
        self.meta = document
        accepted = [message]
        pending, self._pending_status = self._pending_status, None
        if pending is not None:
            accepted += self._apply_status(pending)
        return accepted

    def _apply_status(self, message: TelemetryMessage) -> list[TelemetryMessage]:
        assert self.public_key is not None
        if not verify_document(message.document, self._topic(message), self.public_key):
            self.unauthenticated += 1
            return []
        self.status = message.document
        return [message]

    def apply_tick(self, topic: str, payload: bytes) -> bool:
        """Take a service's tick (``…/svc/{service}/tick``) of this run into account; whether it was one.

        Only the tick index is used (for the progress); a payload that is not a valid tick message of
        this run is counted in :attr:`rejected`. Ticks are not signed by the run's key, so they never
        end the watch.
        """
        parts = topic.split("/")
        if len(parts) != 6 or "/".join(parts[:3]) != f"{PREFIX}/{self.run_id}" or parts[3] != "svc":
            return False
        if parts[5] != "tick" or not payload:
            return False
        try:
            document = decode_json(payload, max_bytes=MAX_MESSAGE_BYTES)
        except PayloadError:
            self.rejected += 1
            return True
        if (
            schema_error(document, load_schema("inference_tick")) is not None
            or document.get("run_id") != self.run_id
            or document.get("service") != parts[4]
        ):
            self.rejected += 1
            return True
        self.seen += 1
        self.ticks_started = max(self.ticks_started or 0, int(document["tick"]) + 1)
        return True

    def progress(self) -> RunProgress:
        """Ticks or rounds against the meta's limit, as ``twin run``'s progress line counts them."""
        kpi = self.last_kpi or {}
        status = self.status or {}
        rounds = kpi.get("round", status.get("rounds_completed", 0))
        rounds = rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else 0
        return stream_progress(self.meta or {}, rounds, self.ticks_started)

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


def _number(value: Any) -> Text:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Text("—" if value is None else str(value))
    if isinstance(value, int):
        return Text(f"{value:,}")
    return Text(f"{value:.4g}")


def _text(value: Any) -> Text:
    """``value`` as plain text: whatever it holds (``[bold]``, ``[/]`` …) is never console markup."""
    return Text(str(value))


def render_view(view: RunView) -> RenderableType:
    """The console view of a run: header, latest KPIs, agents by state, event tail.

    Every value from the stream is a :class:`~rich.text.Text`, so no message can inject console markup.
    """
    meta = view.meta or {}
    status = view.status or {}
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    style = {"running": "green", "finished": "bold green", "aborted": "bold red"}.get(
        view.status_name, "yellow"
    )
    header.add_row("run", _text(view.run_id))
    header.add_row("scenario", _text(meta.get("scenario", status.get("scenario", "—"))))
    status_text = Text(view.status_name, style=style)
    if "error" in status:
        status_text.append(f" — {status['error']}")
    header.add_row("status", status_text)
    if meta:
        header.add_row(
            "seed · devices · base stations",
            _text(f"{meta.get('seed')} · {meta.get('devices')} · {meta.get('base_stations')}"),
        )
        header.add_row("broker (run side)", _text(meta.get("broker")))
        if "started_at" in meta:
            header.add_row("started", _text(meta["started_at"]))
    header.add_row("signed by the key of", _text(view.key_source or "— (no signed meta yet)"))
    kpi = view.last_kpi or {}
    sim_time_s = kpi.get("sim_time_s", status.get("sim_time_s"))
    progress = view.progress()
    if progress.ticked:
        counted = progress.text(sep=" · ")
    else:
        counted = f"{progress.done}/{progress.total if progress.total is not None else '?'}"
    label = "tick · round · simulated time" if progress.ticked else "round · simulated time"
    header.add_row(label, _text(counted) + " · " + _number(sim_time_s) + " s")
    header.add_row(
        "messages",
        _text(
            f"{view.kpi_records} KPI records, {view.telemetry_samples} telemetry samples, "
            f"{sum(view.event_counts.values())} events, {view.rejected} rejected, "
            f"{view.unauthenticated} unauthenticated"
        ),
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
            states = ", ".join(f"{state} {n}" for state, n in sorted(counts[kind].items()))
            agents.add_row(_text(kind), _text(states))
        parts.append(agents)
    if view.events:
        events = Table(title="latest events", box=None, title_justify="left")
        for column in ("t (s)", "agent", "event", "round"):
            events.add_column(column)
        for event in view.events:
            events.add_row(
                _number(event.get("sim_time_s")),
                _text(event.get("agent_id")),
                _text(event.get("event")),
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
    """Subscribe ``bus`` to one run's telemetry (meta, status, KPIs, agents, events) and services' ticks."""
    for topic_filter in (*subscription_filters(run_id), f"{PREFIX}/{run_id}/svc/+/tick"):
        bus.subscribe(topic_filter)


class RunNotFoundError(ConfigError):
    """Nothing of the run is on the broker (no retained meta or status): a wrong run id (exit 2)."""


def follow(
    bus: Bus,
    view: RunView,
    *,
    on_update: Callable[[RunView], None] | None = None,
    timeout_s: float | None = None,
    poll_s: float = 0.25,
    metrics: MetricsExporter | None = None,
    find_timeout_s: float | None = None,
) -> RunView:
    """Feed ``view`` from ``bus`` until the run's status is final (signed by the run).

    Args:
        bus: a connected bus, subscribed to the run's telemetry (:func:`subscribe_run`).
        view: the view to update.
        on_update: called with the view after each batch of messages.
        timeout_s: give up after this long without a message (``None``: wait for ever).
        poll_s: longest wait for messages between updates.
        metrics: also feed these Prometheus metrics (with the messages the view accepted only).
        find_timeout_s: give up when no valid message of the run came within this long from the start
            (``None``: wait for ever).

    Raises:
        RunNotFoundError: nothing of the run within ``find_timeout_s``.
        TwinError: no message within ``timeout_s``.
        BrokerUnreachableError: the broker went away for longer than its reconnect timeout.
    """
    started = last_message = time.monotonic()
    while not view.final:
        messages = bus.poll(poll_s)
        for received in messages:
            if view.apply_tick(received.topic, received.payload):
                continue
            try:
                message = parse_message(received.topic, received.payload)
            except PayloadError:
                view.rejected += 1
                continue
            if message is not None:
                for accepted in view.apply(message):
                    if metrics is not None:
                        metrics.observe(accepted.message_type, accepted.document)
        now = time.monotonic()
        if find_timeout_s is not None and not view.seen and now - started > find_timeout_s:
            raise RunNotFoundError(
                f"no run {view.run_id!r} on {bus.url}: nothing of it after {find_timeout_s:g} s"
                " (`twin runs --broker URL` lists the runs there; --wait S waits for a run about to start)"
            )
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


@dataclass(slots=True)
class RunInfo:
    """A run known to a broker from its retained meta and status."""

    run_id: str
    scenario: str | None = None
    status: str | None = None
    """The run's status, when signed by the key of its meta; ``None``: no (signed) status."""
    started_at: str | None = None
    signed: bool = False
    """Whether the meta was signed by its own key (runs made before signing was added are not)."""


def discover_runs(
    bus: Bus, *, wait_s: float = DISCOVERY_S, quiet_s: float = DISCOVERY_QUIET_S
) -> list[RunInfo]:
    """The runs whose meta or status the broker retains, newest first (by ``started_at``).

    Listens at most ``wait_s`` seconds, and stops ``quiet_s`` after the last message. A status counts
    only when signed by the key of its run's meta; invalid messages are skipped.
    """
    for topic_filter in (f"{PREFIX}/+/meta", f"{PREFIX}/+/status"):
        bus.subscribe(topic_filter)
    views: dict[str, RunView] = {}
    started = last = time.monotonic()
    while (now := time.monotonic()) - started < wait_s and now - last < quiet_s:
        messages = bus.poll(min(0.1, wait_s))
        if messages:
            last = time.monotonic()
        for received in messages:
            try:
                message = parse_message(received.topic, received.payload)
            except PayloadError:
                continue
            if message is not None and message.message_type in ("meta", "status"):
                views.setdefault(message.run_id, RunView(message.run_id)).apply(message)
    runs = []
    for run_id, view in views.items():
        meta = view.meta or {}
        pending = view._pending_status.document if view._pending_status is not None else {}
        runs.append(
            RunInfo(
                run_id,
                str(meta.get("scenario", pending.get("scenario", ""))) or None,
                view.status["status"] if view.status else None,
                str(meta["started_at"]) if "started_at" in meta else None,
                view.meta is not None,
            )
        )
    runs.sort(key=lambda r: r.run_id)
    runs.sort(key=lambda r: r.started_at or "", reverse=True)
    return runs


def newest_running(runs: list[RunInfo], url: str) -> str:
    """The id of the newest run whose signed status is ``running``.

    Raises:
        RunNotFoundError: none is.
    """
    for run in runs:
        if run.status == "running":
            return run.run_id
    raise RunNotFoundError(
        f"no running run on {url} ({len(runs)} finished or unknown); give a run id (`twin runs` lists them)"
    )


def list_runs(broker: str, *, wait_s: float = DISCOVERY_S) -> tuple[str, list[RunInfo]]:
    """(the broker's URL, its runs newest first): what ``twin runs`` shows.

    Raises:
        ConfigError: bad broker URL (``embedded`` included).
        BrokerUnreachableError: the broker cannot be reached.
    """
    bus = connect(broker)
    try:
        return bus.url, discover_runs(bus, wait_s=wait_s)
    finally:
        bus.close()


def watch_run(
    run_id: str | None,
    broker: str,
    *,
    console: Console | None = None,
    timeout_s: float | None = None,
    metrics: MetricsExporter | None = None,
    on_subscribed: Callable[[str, str], None] | None = None,
    key_file: Path | None = None,
    runs_dir: Path | None = Path("runs"),
    find_timeout_s: float | None = FIND_TIMEOUT_S,
) -> RunView:
    """Show a run live on ``console`` until it ends; returns what was seen.

    Args:
        run_id: the run; ``None``: the newest run whose status is ``running``.
        broker: the broker the run publishes to.
        console: where to show it.
        timeout_s: give up after this long without a message.
        metrics: also serve what is seen as Prometheus metrics.
        on_subscribed: told the run id and the broker's URL once the subscriptions are in place.
        key_file: the run's public key (``run_key.pub``), required for its metas and statuses.
        runs_dir: where run directories are; the key of ``runs_dir/<run_id>/run_key.pub`` is used when
            it exists (and ``key_file`` is not given), else the first signed meta's (trust on first use).
        find_timeout_s: give up when nothing of the run came within this long.

    Raises:
        ConfigError: bad run id, broker URL or key file.
        RunNotFoundError: no such run on the broker (no running run, without ``run_id``).
        BrokerUnreachableError: the broker cannot be reached, or went away.
        TwinError: no message within ``timeout_s``.
    """
    if run_id is not None:
        try:
            check_segment(run_id, "run id")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    public_key = load_public_key(key_file) if key_file is not None else None
    bus = connect(broker)
    try:
        if run_id is None:
            run_id = newest_running(discover_runs(bus), bus.url)
        view = RunView(run_id, public_key=public_key, key_source=str(key_file) if key_file else None)
        if public_key is None and runs_dir is not None:
            view.key_file = runs_dir / run_id / RUN_KEY_FILE
        subscribe_run(bus, run_id)
        if on_subscribed is not None:
            on_subscribed(run_id, bus.url)
        with Live(render_view(view), console=console, auto_refresh=False, transient=False) as live:
            follow(
                bus,
                view,
                on_update=lambda v: live.update(render_view(v), refresh=True),
                timeout_s=timeout_s,
                metrics=metrics,
                find_timeout_s=find_timeout_s,
            )
        if not live.console.is_terminal:
            live.console.line()
    finally:
        bus.close()
    return view
