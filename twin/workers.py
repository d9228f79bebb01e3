"""Device hosts on Ray (``twin run … --workers N``): the devices of a run spread over worker processes.

The run builds its world as usual; the devices' side (their data, sensor windows and the services they
take part in) is then split among N device hosts by a deterministic rule — device ``i`` in id order
goes to worker ``i mod N`` — and each host runs as a **Ray actor** with its own MQTT client. The
network agent does not notice: it publishes plans and global models and waits for one update per
device, whoever hosts it. Because a cohort's training gives each device the same parameters whatever
the cohort's size, and the network aggregates in sender-id order, the KPI tables are identical for
any number of workers.

A local Ray cluster is started for the run (and stopped after it) unless one is running already, or
``--ray-address`` names an existing cluster, whose workers must then reach the run's broker (an
external ``--broker``). Ray is optional: ``pip install 'aiaas-twin[ray]'``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from twin.errors import ConfigError, RunAbortedError

if TYPE_CHECKING:
    from agents.host import DeviceHost
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
    credentials: Credentials | None = None
    federated: list[FederatedPart] = field(default_factory=list)
    inference: list[InferencePart] = field(default_factory=list)

    @property
    def device_ids(self) -> list[str]:
        """The devices of this worker, sorted."""
        return sorted({a for part in self.federated for a in part.data})


def partition(host: DeviceHost, workers: int, *, broker_url: str, keys: RunKeys) -> list[HostSpec]:
    """Split ``host``'s devices among ``workers`` hosts: device ``i`` (in id order) → worker ``i mod N``.

    Each worker gets the keys of its own devices and its own host key, nothing more.
    """
    ids = host.device_ids
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
        self.bus.subscribe(self.topics.status)

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
    if host is None or not host.device_ids:
        raise ConfigError("--workers: this scenario has no devices to place on workers")
    specs = partition(host, workers, broker_url=broker_url, keys=model.keys)
    for service in model.services:
        set_members = getattr(service, "set_members", None)
        if set_members is not None:
            set_members(
                {
                    spec.host_id: set(part.windows)
                    for spec in specs
                    for part in spec.inference
                    if part.service == service.service
                }
            )
    pool = WorkerPool(specs, ray_address=ray_address)
    model.health_checks.append(pool.check)
    return pool
