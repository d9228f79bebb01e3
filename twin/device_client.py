"""The reference device client (``twin device``): a device of the twin that lives outside the run.

It takes the place of a device the run reserved with ``--set devices.external=<id>``: it connects to the
run's broker, reads each round's plan and global model from the wire, trains on its **own** data when it
is selected, and uploads its update — the protocol of ``docs/device-protocol.md``, implemented with the
same :class:`~agents.host.DeviceHost` the run uses for its own devices. It needs paho-mqtt, safetensors
and torch (no Mesa, no scenario code), so it runs on a Raspberry Pi or any machine that can reach the
broker.

The twin keeps its own physics for this device: its simulated download, compute and upload times come
from the reserved device's link and compute profile, and its aggregation weight from its registered
data size, so a run stays reproducible whatever hardware the client runs on.

Data file: a safetensors file with ``x`` (samples × features, float) and ``y`` (samples, integer class).
Credentials file: written by the run as ``runs/<run_id>/credentials/<device>.json`` (the device's key and
the network's public key); without it the run refuses the client's updates as forged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agents.host import DeviceHost
from broker.bus import Bus, Message
from broker.json_codec import decode_json
from broker.topics import Topics, check_segment, parse_model_topic
from twin.auth import Credentials
from twin.errors import ConfigError, PayloadError, TwinError
from twin.learning.cohort import LocalData
from twin.learning.models import MLP, init_params
from twin.learning.round_plan import parse_round_plan

log = logging.getLogger(__name__)

ENDED = ("finished", "aborted", "stopped")


@dataclass(slots=True)
class ClientReport:
    """What the client did."""

    rounds_trained: list[int]
    updates_sent: int
    run_status: str | None


def load_device_data(path: Path) -> LocalData:
    """Read a device's data file (safetensors with ``x`` and ``y``).

    Raises:
        ConfigError: the file is missing, not safetensors, or its tensors have the wrong shapes.
    """
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"--data {path}: not a readable safetensors file ({exc})") from exc
    x, y = tensors.get("x"), tensors.get("y")
    if x is None or y is None or x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"--data {path}: needs tensors x (samples × features) and y (samples), same length")
    if x.is_floating_point() is False or y.is_floating_point():
        raise ConfigError(f"--data {path}: x must be floating point and y integer class labels")
    return LocalData(x.to(torch.float32).contiguous(), y.to(torch.int64).contiguous())


def save_device_data(path: Path, data: LocalData) -> None:
    """Write a device's data file in the format :func:`load_device_data` reads."""
    save_file({"x": data.x.contiguous(), "y": data.y.contiguous()}, str(path))


class DeviceClient:
    """One external device: joins each federated service of the run when its first plan arrives."""

    def __init__(
        self,
        bus: Bus,
        *,
        run_id: str,
        device_id: str,
        data: LocalData,
        credentials: Credentials,
        seed: int = 0,
        chunk_bytes: int = 256 * 1024,
        max_payload_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        check_segment(device_id, "device id")
        if credentials.run_id != run_id or device_id not in credentials.keys:
            raise ConfigError(f"the credentials are not those of device {device_id} in run {run_id}")
        self.bus = bus
        self.topics = Topics(run_id)
        self.device_id = device_id
        self.data = data
        self.host = DeviceHost(
            host_id=device_id,
            bus=bus,
            topics=self.topics,
            seed=seed,
            chunk_bytes=chunk_bytes,
            max_payload_bytes=max_payload_bytes,
            credentials=credentials,
            subscribe=self._subscribe_once,
        )
        self.status: str | None = None
        bus.subscribe(self._plans)
        bus.subscribe(self.topics.status)

    @property
    def _plans(self) -> str:
        return f"{self.topics.root}/ml/+/+/select"

    def _subscribe_once(self, topic_filter: str) -> None:
        """Services' plan filters overlap the all-services one: subscribing twice may double messages."""
        if not topic_filter.endswith("/select"):
            self.bus.subscribe(topic_filter)

    def handle(self, message: Message) -> None:
        """Route one received message (bad input is counted in ``bus.stats``, never raised)."""
        if message.topic == self.topics.status:
            try:
                self.status = str(decode_json(message.payload, max_bytes=1 << 16).get("status"))
            except PayloadError:
                self.bus.stats.reject("malformed")
            return
        parsed = parse_model_topic(self.topics, message.topic)
        if parsed is not None and parsed.kind == "select" and parsed.service not in self.host.federated:
            self._join(parsed.service, parsed.round_index, message.payload)
        if self.host.handles(message.topic):
            self.host.on_message(message)

    def _join(self, service: str, round_index: int, payload: bytes) -> None:
        """Build the service's model from its first plan and take part from then on."""
        try:
            plan = parse_round_plan(
                payload, run_id=self.topics.run_id, service=service, round_index=round_index
            )
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)
            return
        spec = plan.model
        if spec.kind != "mlp" or spec.in_features != self.data.x.shape[1]:
            log.error(
                "service %s wants a %s model on %d features; this device's data has %d: not joining",
                service,
                spec.kind,
                spec.in_features,
                self.data.x.shape[1],
            )
            self.bus.stats.reject("unexpected")
            return
        net = MLP(spec.in_features, spec.hidden, spec.n_classes)
        template = init_params(net, torch.Generator().manual_seed(0))
        self.host.join_federated(service, net=net, template=template, data={self.device_id: self.data})
        log.info("device %s joined service %s of run %s", self.device_id, service, self.topics.run_id)

    def run(self, *, rounds: int | None = None, timeout_s: float | None = None) -> ClientReport:
        """Serve until the run ends (its status), ``rounds`` rounds were trained, or ``timeout_s`` passed.

        Raises:
            TwinError: the broker went away for good, or nothing happened within ``timeout_s``.
        """
        started = time.monotonic()
        while True:
            self.bus.check()
            for message in self.bus.poll(0.1):
                self.handle(message)
            trained = self.rounds_trained()
            if rounds is not None and len(trained) >= rounds:
                break
            if self.status in ENDED:
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                if not trained:
                    raise TwinError(
                        f"no round of run {self.topics.run_id} selected device {self.device_id} "
                        f"within {timeout_s:.0f} s"
                    )
                break
        return ClientReport(self.rounds_trained(), self.host.updates_sent, self.status)

    def rounds_trained(self) -> list[int]:
        """Rounds in which this device trained and uploaded."""
        return sorted({r for role in self.host.federated.values() for r in role.uploaded})
