"""Device hosts on Ray (``twin run … --workers N``): the devices of a run spread over worker processes.

The run builds its world as usual; the devices' side (their data, sensor windows and the services they
take part in) is then split among N device hosts by a deterministic rule — device ``i`` in id order
goes to worker ``i mod N`` — and each host runs as a **Ray actor** with its own MQTT client. The
network agent does not notice: it publishes plans and global models and waits for one update per
device, whoever hosts it. Because a cohort's training gives each device the same parameters whatever
the cohort's size, and the network aggregates in sender-id order, the KPI tables are identical for
any number of workers.

Besides federated training and two-stage inference (the generic :class:`agents.host.DeviceHost`), a
scenario may have device sides of its own (the classroom's terminals, the food organisations' ledgers):
it describes each as a :class:`WorkerPart` in ``model.worker_parts`` instead of building its host in
the run's process. A part is split like the rest (the same owner per device), each worker builds its
share beside its device host (:meth:`WorkerPart.build`, with that host at hand for the models its
devices received), and the network side of the part's service learns which worker holds which devices
(``set_members``).

A local Ray cluster is started for the run (and stopped after it) unless one is running already, or
``--ray-address`` names an existing cluster, whose workers must then reach the run's broker (an
external ``--broker``). Ray is optional: ``pip install 'aiaas-twin[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from twin import parallel
from twin.errors import ConfigError, RunAbortedError

if TYPE_CHECKING:
    from agents.host import DeviceHost
    from broker.bus import Bus, Message
    from broker.topics import Topics
    from twin.auth import Credentials, RunKeys
    from twin.learning.cohort import LocalData, Params

log = logging.getLogger(__name__)

ENDED = ("finished", "aborted", "stopped")


@dataclass(slots=True)
class FederatedPart:
    """A worker's devices in one federated service."""

    service: str
    net: torch.nn.Module
    template: Params
    data: dict[str, LocalData]


@dataclass(slots=True)
class InferencePart:
    """A worker's devices in one two-stage inference service."""

    service: str
    model_service: str
    windows: dict[str, torch.Tensor]
    confidence_threshold: float
    escalate_anomalies: bool
    normal_class: int


@dataclass(frozen=True, slots=True)
class PartContext:
    """What a device side needs to become an endpoint: where it runs and the devices' own host."""

    host_id: str
    """Its host id (on a worker the worker's, ``worker-0``: topics are per service, so one id serves all)."""
    bus: Bus
    topics: Topics
    seed: int
    credentials: Credentials
    devices: DeviceHost | None
    """The device host beside it (the models its devices received, for on-device inference)."""


class PartHost(Protocol):
    """A scenario's device side as an endpoint: what the model's ``pump`` or a worker hands messages to."""

    host_id: str

    def subscriptions(self) -> tuple[str, ...]:
        """Topic filters it listens on."""

    def handles(self, topic: str) -> bool:
        """Whether a message on ``topic`` is addressed to it."""

    def on_message(self, message: Message) -> None:
        """Handle one message (bad input is counted, never raised)."""


class WorkerPart(Protocol):
    """A scenario's own device side for some devices, as data: picklable, split by device, built anywhere."""

    @property
    def service(self) -> str:
        """The service whose network side (``set_members``) expects a batch from each host of its devices."""

    @property
    def device_ids(self) -> Collection[str]:
        """The devices it holds."""

    def split(self, devices: Collection[str]) -> WorkerPart | None:
        """The same side for ``devices`` only (None when it holds none of them)."""

    def build(self, ctx: PartContext) -> PartHost:
        """The endpoint, for ``ctx.host_id`` on ``ctx.bus``."""


@dataclass(slots=True)
class HostSpec:
    """Everything a worker needs to be a device host of the run (sent to the actor once)."""

    host_id: str
    broker_url: str
    run_id: str
    seed: int
    chunk_bytes: int
    max_payload_bytes: int
    wire_dtype: str
    pack_updates: bool = False
    credentials: Credentials | None = None
    federated: list[FederatedPart] = field(default_factory=list)
    inference: list[InferencePart] = field(default_factory=list)
    parts: list[Any] = field(default_factory=list)
    """The scenario's own device sides (:class:`WorkerPart`), each for this worker's devices."""

    @property
    def device_ids(self) -> list[str]:
        """The devices of this worker, sorted."""
        ids = {a for part in self.federated for a in part.data}
        for extra in self.parts:
            ids.update(extra.device_ids)
        return sorted(ids)


def partition(
    host: DeviceHost,
    workers: int,
    *,
    broker_url: str,
    keys: RunKeys,
    parts: Collection[WorkerPart] = (),
) -> list[HostSpec]:
    """Split ``host``'s devices among ``workers`` hosts: device ``i`` (in id order) → worker ``i mod N``.

    The devices are those of ``host`` and of the scenario's own device sides (``parts``), in one id
    order, so a device's every side lands on the same worker. Each worker gets the keys of its own
    devices and its own host key, nothing more.
    """
    ids = sorted(set(host.device_ids).union(*(part.device_ids for part in parts)))
    owner = {a: i % workers for i, a in enumerate(ids)}
    specs = [
        HostSpec(
            host_id=f"worker-{k}",
            broker_url=broker_url,
            run_id=host.topics.run_id,
            seed=host.seeds.seed,
            chunk_bytes=host.exchange.chunk_bytes,
            max_payload_bytes=host.exchange.max_payload_bytes,
            wire_dtype=host.exchange.wire_dtype,
            pack_updates=host.pack_updates,
        )
        for k in range(workers)
    ]
    for service, role in host.federated.items():
        for k, spec in enumerate(specs):
            spec.federated.append(
                FederatedPart(
                    service, role.net, role.initial, {a: d for a, d in role.data.items() if owner[a] == k}
                )
            )
    for service, inf in host.inference.items():
        for k, spec in enumerate(specs):
            spec.inference.append(
                InferencePart(
                    service,
                    inf.model_service,
                    {a: w for a, w in inf.windows.items() if owner.get(a) == k},
                    inf.confidence_threshold,
                    inf.escalate_anomalies,
                    inf.normal_class,
                )
            )
    for part in parts:
        for k, spec in enumerate(specs):
            mine = part.split([a for a in part.device_ids if owner[a] == k])
            if mine is not None:
                spec.parts.append(mine)
    for spec in specs:
        spec.credentials = keys.credentials([spec.host_id, *spec.device_ids])
    return specs


class HostWorker:
    """A device host in a worker process: connects, subscribes, then serves until the run ends."""

    def __init__(self, spec: HostSpec) -> None:
        from agents.host import DeviceHost
        from broker.mqtt_bus import MqttBus
        from broker.topics import Topics
        from broker.url import parse_broker_url

        torch.set_num_threads(1)  # one core per worker: N workers must not oversubscribe the machine
        parallel.set_threads(1)
        if spec.credentials is None:
            raise ConfigError(f"device host {spec.host_id} has no credentials")
        self.spec = spec
        self.topics = Topics(spec.run_id)
        self.bus = MqttBus(parse_broker_url(spec.broker_url), client_id=f"twin-{spec.run_id}-{spec.host_id}")
        self.host = DeviceHost(
            host_id=spec.host_id,
            bus=self.bus,
            topics=self.topics,
            seed=spec.seed,
            chunk_bytes=spec.chunk_bytes,
            max_payload_bytes=spec.max_payload_bytes,
            credentials=spec.credentials,
            wire_dtype=spec.wire_dtype,  # type: ignore[arg-type]
            pack_updates=spec.pack_updates,
        )
        for part in spec.federated:
            self.host.join_federated(part.service, net=part.net, template=part.template, data=part.data)
        for inf in spec.inference:
            self.host.join_inference(
                inf.service,
                model_service=inf.model_service,
                windows=inf.windows,
                confidence_threshold=inf.confidence_threshold,
                escalate_anomalies=inf.escalate_anomalies,
                normal_class=inf.normal_class,
            )
        self.parts: list[PartHost] = []
        context = PartContext(spec.host_id, self.bus, self.topics, spec.seed, spec.credentials, self.host)
        for part in spec.parts:
            built = part.build(context)
            for topic_filter in built.subscriptions():
                self.bus.subscribe(topic_filter)
            self.parts.append(built)
        self.bus.subscribe(self.topics.status)

    def _part_for(self, topic: str) -> PartHost | None:
        return next((p for p in self.parts if p.handles(topic)), None)

    def ready(self) -> str:
        """The host id, once connected and subscribed."""
        return self.spec.host_id

    def serve(self) -> dict[str, Any]:
        """Handle this host's messages until the run's status is final; returns the host's counters."""
        from broker.json_codec import decode_json
        from twin.errors import PayloadError

        status = None
        try:
            while status not in ENDED:
                self.bus.check()
                for message in self.bus.poll(0.1):
                    if message.topic == self.topics.status:
                        try:
                            status = decode_json(message.payload, max_bytes=1 << 16).get("status")
                        except PayloadError:
                            self.bus.stats.reject("malformed")
                    elif self.host.handles(message.topic):
                        self.host.on_message(message)
                    elif (part := self._part_for(message.topic)) is not None:
                        part.on_message(message)
                    else:
                        self.bus.stats.reject("unknown")
        finally:
            self.bus.close()
        return {"host": self.spec.host_id, "updates_sent": self.host.updates_sent, **self.bus.stats.as_dict()}


class WorkerPool:
    """N device hosts as Ray actors; :meth:`check` raises when one of them is gone."""

    def __init__(self, specs: list[HostSpec], *, ray_address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--workers needs Ray: pip install 'aiaas-twin[ray]'") from exc
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            ray.init(
                address=ray_address,
                num_cpus=None if ray_address else max(os.cpu_count() or 1, len(specs)),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=False,
            )
        actor = ray.remote(num_cpus=1, max_restarts=0)(HostWorker)
        self.specs = specs
        self.actors: list[Any] = [actor.options(name=None).remote(spec) for spec in specs]
        try:
            ray.get([a.ready.remote() for a in self.actors], timeout=180)
        except Exception as exc:
            self.close()
            raise RunAbortedError(f"device host workers did not start: {exc}") from exc
        self.runs = [a.serve.remote() for a in self.actors]
        self._done: dict[int, dict[str, Any]] = {}

    def check(self) -> None:
        """Raise :class:`RunAbortedError` naming a worker that died or stopped before the run ended."""
        ready, _ = self._ray.wait(self.runs, num_returns=len(self.runs), timeout=0)
        for ref in ready:
            k = self.runs.index(ref)
            host_id = self.specs[k].host_id
            try:
                self._ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - any failure of the worker ends the run
                raise RunAbortedError(f"device host {host_id} died: {type(exc).__name__}") from exc
            raise RunAbortedError(f"device host {host_id} stopped before the run ended")

    def kill(self, index: int) -> None:
        """Kill worker ``index`` (tests, fault drills)."""
        self._ray.kill(self.actors[index], no_restart=True)

    def close(self, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Wait for the workers to see the run's final status, then release them (and the local cluster)."""
        reports: list[dict[str, Any]] = []
        ray = self._ray
        runs = getattr(self, "runs", [])
        if runs:
            ready, _ = ray.wait(runs, num_returns=len(runs), timeout=timeout_s)
            for ref in ready:
                try:
                    reports.append(ray.get(ref))
                except Exception:  # noqa: BLE001 - a dead worker was reported by check()
                    log.debug("worker ended with an error", exc_info=True)
        for a in self.actors:
            ray.kill(a, no_restart=True)
        if self._started_ray:
            ray.shutdown()
        return reports


def start_workers(model: Any, workers: int, *, broker_url: str, ray_address: str | None) -> WorkerPool:
    """Split the built model's devices among ``workers`` Ray actors and wire the services to them."""
    host = model.local_device_host
    parts: list[WorkerPart] = list(getattr(model, "worker_parts", ()))
    if host is None or not (host.device_ids or any(part.device_ids for part in parts)):
        raise ConfigError("--workers: this scenario has no devices to place on workers")
    specs = partition(host, workers, broker_url=broker_url, keys=model.keys, parts=parts)
    members: dict[str, dict[str, set[str]]] = {}
    for spec in specs:
        for inference in spec.inference:
            members.setdefault(inference.service, {})[spec.host_id] = set(inference.windows)
        for extra in spec.parts:
            members.setdefault(extra.service, {})[spec.host_id] = set(extra.device_ids)
    for service in model.services:
        set_members = getattr(service, "set_members", None)
        if set_members is not None:
            set_members(members.get(service.service, {}))
    pool = WorkerPool(specs, ray_address=ray_address)
    model.health_checks.append(pool.check)
    return pool
