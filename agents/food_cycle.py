"""Food-cycle organisations (paper §2.3.3): their devices, and their side of the data service over MQTT.

Fixed sites — shop terminals, warehouse gateways, household hubs — and moving vehicles — delivery vans
and waste trucks, driving the street grid like robotaxis. Each organisation has **one egress node**
(the paper's assumption b): its device. A :class:`LedgerHost` is the organisations' side of the data
service as one MQTT endpoint: it holds every organisation's raw daily food-ledger records **with their
identifiers**; on each collection tick it runs the data service's device side
(:class:`twin.services.data_management.DataCollector`, one per organisation kind: each standardises
against a reference of its organisations' size) on every record of the day, so that only desensitised
fields and standardised features leave, in one signed batch. It also receives the plans
the network publishes (allocation and routes, model variants, placements) and checks their signature.

Its devices that run the demand model themselves (placed on ``device``) take their compressed variant
**from the wire** (:class:`OnDeviceModels`): every variant the network offers is published once,
retained and signed, on ``ml/{compression service}/{index}/global`` — int8 weights as int8, a pruned
matrix as bitmask + non-zero values (:func:`twin.services.compression.to_wire`) — and the host rebuilds
each device's model from what it decoded. Asked by a forecast tick, it answers in one signed batch: for
every such device the variant and the SHA-256 of the model message it runs, and for a shop its
class probabilities of the planning week's rows, computed with that decoded model.

The organisations' side is described by a :class:`LedgerPart` and built where they run: one ledger
host in the run's process, or, with ``--workers``, one per device-host worker for the organisations it
holds (:mod:`twin.workers`). Each organisation's records, collector memory and forecasts are its own,
and the network sorts what it receives by organisation, so the split changes no result.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from mesa.experimental.continuous_space import ContinuousSpace
from torch import nn

from agents.device import Device
from agents.robotaxi import Robotaxi
from broker.bus import Bus, Message
from broker.json_codec import decode_json, encode_json
from broker.model_exchange import ModelExchange, ReceivedModel
from broker.topics import Topics, parse_model_topic
from twin.auth import NETWORK, Credentials, json_digest, sign_document
from twin.errors import PayloadError
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData, Params, batch_invariant_logits
from twin.services.compression import from_wire
from twin.services.data_management import DataCollector

if TYPE_CHECKING:
    from twin.workers import PartContext

log = logging.getLogger(__name__)

LEDGER_SCHEMA = "twin.food.ledger.v1"
PLAN_SCHEMA = "twin.food.plan.v1"
FORECAST_TICK_SCHEMA = "twin.food.forecast.tick.v1"
FORECAST_SCHEMA = "twin.food.forecast.request.v1"
MAX_FORECAST_ROWS = 100_000
"""Most input rows one forecast tick may ask of one device."""


class FoodSite(Device):
    """A fixed organisation's egress device (shop terminal, warehouse gateway, household hub)."""

    kind: ClassVar[str] = "food-site"

    def __init__(
        self,
        model: Any,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        compute: ComputeProfile,
        data: LocalData,
    ) -> None:
        super().__init__(
            model, space, agent_id=agent_id, position_m=position_m, height_m=1.5, compute=compute, data=data
        )


class ShopTerminal(FoodSite):
    """A shop's sales terminal: keeps the shop's sales history and trains the demand model on it."""

    kind: ClassVar[str] = "shop"


class WarehouseGateway(FoodSite):
    """A warehouse's entry/exit system: the depot the delivery vans load at."""

    kind: ClassVar[str] = "warehouse"


class HouseholdHub(FoodSite):
    """A household's food-ledger hub (smart fridge, bin sensor): a small, low-power device."""

    kind: ClassVar[str] = "household"


class DeliveryVan(Robotaxi):
    """A food delivery van with a positioning system, driving the street grid."""

    kind: ClassVar[str] = "delivery-van"


class WasteTruck(Robotaxi):
    """A waste-collection truck with a positioning system, driving the street grid."""

    kind: ClassVar[str] = "waste-truck"


def encode_features(x: np.ndarray) -> str:
    """Standardised features as they travel: base64 of little-endian float32."""
    return base64.b64encode(np.asarray(x, dtype="<f4").tobytes()).decode()


def decode_f32(text: object, width: int, max_rows: int) -> np.ndarray | None:
    """``(rows, width)`` float32 values of base64 little-endian float32 text.

    None unless it is 1 to ``max_rows`` whole rows of finite values.
    """
    if not isinstance(text, str) or len(text) > 4 * (4 * width * max_rows // 3 + 4):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw or len(raw) % (4 * width):
        return None
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(-1, width)
    if values.shape[0] > max_rows or not bool(np.isfinite(values).all()):
        return None
    return values


@dataclass(frozen=True, slots=True)
class OnDeviceModels:
    """What the organisations need to run the network's compressed models on their own devices."""

    model_service: str
    """Variants arrive on ``ml/{model_service}/{index}/global`` (safetensors, signed by the network)."""
    compression_plan: str
    """Topic of the compression plan: model user → its ``variant`` and that variant's ``model`` index."""
    deployment_plan: str
    """Topic of the deployment plan: model user → ``device``, ``edge`` or ``cloud``."""
    forecast_service: str
    """Forecast ticks on ``svc/{forecast_service}/tick``; answers on ``…/request/{host}``."""
    net: nn.Module
    """The model's architecture (what the decoded parameters run in)."""
    template: Params
    """Every parameter's name and shape: a decoded variant must rebuild exactly these."""
    in_features: int
    chunk_bytes: int
    max_payload_bytes: int


@dataclass(frozen=True, slots=True)
class _Variant:
    """A variant as this host decoded it from the wire."""

    name: str
    sha256: str
    """Hex content digest of the model message (what its signature covers)."""
    params: Params


@dataclass(frozen=True, slots=True)
class LedgerPart:
    """The organisations' side of the food services for some organisations, as data.

    A :class:`twin.workers.WorkerPart`: built as one :class:`LedgerHost` in the run's process, or split
    among the ``--workers`` device hosts.
    """

    service: str
    """The data service (its collection ticks, the batches it expects)."""
    plan_topics: tuple[str, ...]
    collectors: Mapping[str, DataCollector]
    """Organisation → the data collector of its kind."""
    records: Mapping[str, list[list[dict[str, Any]]]]
    """Organisation → its raw records, per collection day."""
    models: OnDeviceModels | None = None

    @property
    def device_ids(self) -> Collection[str]:
        """The organisations (their egress devices) it holds."""
        return self.records.keys()

    def split(self, devices: Collection[str]) -> LedgerPart | None:
        """The same side for ``devices`` only (None when none of them is an organisation of it)."""
        wanted = set(devices)
        records = {a: r for a, r in self.records.items() if a in wanted}
        if not records:
            return None
        return replace(self, records=records, collectors={a: self.collectors[a] for a in records})

    def build(self, ctx: PartContext) -> LedgerHost:
        """The ledger host of these organisations."""
        return LedgerHost(
            host_id=ctx.host_id,
            bus=ctx.bus,
            topics=ctx.topics,
            credentials=ctx.credentials,
            service=self.service,
            plan_topics=self.plan_topics,
            collectors=self.collectors,
            records=self.records,
            models=self.models,
        )


class LedgerHost:
    """Every organisation's daily food ledger, desensitised on the device and published per tick."""

    def __init__(
        self,
        *,
        host_id: str,
        bus: Bus,
        topics: Topics,
        credentials: Credentials,
        service: str,
        plan_topics: tuple[str, ...],
        collectors: Mapping[str, DataCollector],
        records: Mapping[str, list[list[dict[str, Any]]]],
        models: OnDeviceModels | None = None,
    ) -> None:
        """``collectors`` maps each organisation (agent id) to the data collector of its kind.

        ``models``: how its devices that run the demand model themselves receive it (None: they never do).
        """
        missing = sorted(set(records) - set(collectors))
        if missing:
            raise ValueError(f"no data collector for organisations {missing[:5]}")
        self.host_id = host_id
        self.bus = bus
        self.topics = topics
        self.credentials = credentials
        self.service = service
        self.plan_topics = plan_topics
        self.collectors = dict(collectors)
        self.records = dict(sorted(records.items()))
        self.last_tick = -1
        self.plans: dict[str, dict[str, Any]] = {}
        self.models = models
        self.exchange: ModelExchange | None = None
        if models is not None:
            self.exchange = ModelExchange(
                bus,
                topics,
                chunk_bytes=models.chunk_bytes,
                max_payload_bytes=models.max_payload_bytes,
                verifier=lambda sender, topic, digest, tag: (
                    sender == NETWORK and credentials.verify_network(topic, digest, tag)
                ),
            )
        self.variants: dict[int, _Variant] = {}
        """Variant index → the variant as decoded from the wire."""
        self.installed: dict[str, _Variant] = {}
        """Device → the decoded variant it runs (once the forecast tick is answered)."""
        self.forecast_inputs: dict[str, np.ndarray] | None = None
        self.forecast_tick = -1
        self.forecast_answered = False

    def subscriptions(self) -> tuple[str, ...]:
        """Topics this host listens on: collection ticks, the network's plans, models and forecast ticks."""
        topics = (self.topics.tick(self.service), *self.plan_topics)
        if self.models is None:
            return topics
        service = self.models.model_service
        return (
            *topics,
            f"{self.topics.root}/ml/{service}/+/global/#",
            self.topics.tick(self.models.forecast_service),
        )

    def handles(self, topic: str) -> bool:
        """Whether ``topic`` is addressed to this host."""
        if self.models is not None:
            parsed = parse_model_topic(self.topics, topic)
            if parsed is not None:
                return parsed.service == self.models.model_service and parsed.kind == "global"
            if topic == self.topics.tick(self.models.forecast_service):
                return True
        return topic in self.plan_topics or topic == self.topics.tick(self.service)

    def on_message(self, message: Message) -> None:
        """Handle a tick, a plan or a model; bad input is counted, never raised."""
        try:
            if self.exchange is not None and parse_model_topic(self.topics, message.topic) is not None:
                self._on_model(message)
                return
            doc = decode_json(message.payload, max_bytes=1 << 24)
            if not self.credentials.verify_network(message.topic, json_digest(doc), doc.get("auth")):
                raise PayloadError("forged", f"message on {message.topic} not signed by the run's network")
            if message.topic in self.plan_topics:
                if doc.get("schema") != PLAN_SCHEMA or doc.get("run_id") != self.topics.run_id:
                    raise PayloadError("malformed", "food plan has a wrong schema or run")
                self._check_plan(message.topic, doc)
                self.plans[message.topic] = doc
                self._maybe_forecast()
            elif self.models is not None and message.topic == self.topics.tick(self.models.forecast_service):
                self._on_forecast_tick(doc)
            else:
                self._on_tick(doc)
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)
            log.warning("ledger host %s rejected %s on %s: %s", self.host_id, exc.kind, message.topic, exc)

    # ---- models on the devices -------------------------------------------------------------------
    def _check_plan(self, topic: str, doc: Mapping[str, Any]) -> None:
        """The compression and deployment plans must name what a device needs, in the right types."""
        models, plan = self.models, doc.get("plan")
        if models is None or topic not in (models.compression_plan, models.deployment_plan):
            return
        if not isinstance(plan, dict):
            raise PayloadError("malformed", f"plan on {topic} is not an object")
        for entry in plan.values():
            if topic == models.deployment_plan and entry not in ("device", "edge", "cloud"):
                raise PayloadError("malformed", "deployment plan names an unknown placement")
            if topic == models.compression_plan and not (
                isinstance(entry, dict)
                and isinstance(entry.get("model"), int)
                and not isinstance(entry.get("model"), bool)
                and entry["model"] >= 0
                and isinstance(entry.get("variant"), str)
            ):
                raise PayloadError("malformed", "compression plan entry lacks its variant or model index")

    def _on_model(self, message: Message) -> None:
        """A variant from the wire: authenticated and decoded by the exchange, rebuilt to the architecture."""
        assert self.exchange is not None and self.models is not None
        received = self.exchange.receive(message)  # counts what it refuses
        if received is None:
            return
        if not isinstance(received, ReceivedModel) or received.kind != "global":
            raise PayloadError("unexpected", f"{message.topic} is not a model for this host")
        try:
            params = from_wire(received.payload.tensors, self.models.template)
        except ValueError as exc:
            raise PayloadError("malformed", f"variant {received.round_index}: {exc}") from exc
        name = received.payload.metadata.get("variant", "")
        self.variants[received.round_index] = _Variant(name, received.payload.digest.hex(), params)
        self._maybe_forecast()

    def _on_forecast_tick(self, doc: Mapping[str, Any]) -> None:
        assert self.models is not None
        tick, inputs = doc.get("tick"), doc.get("inputs")
        if (
            doc.get("schema") != FORECAST_TICK_SCHEMA
            or doc.get("run_id") != self.topics.run_id
            or doc.get("service") != self.models.forecast_service
            or not isinstance(tick, int)
            or isinstance(tick, bool)
            or tick < 0
            or not isinstance(inputs, list)
        ):
            raise PayloadError("malformed", "forecast tick has a wrong schema, run, service or index")
        if tick <= self.forecast_tick:
            raise PayloadError("duplicate", f"forecast tick {tick} already received")
        rows: dict[str, np.ndarray] = {}
        for item in inputs:
            agent_id = item.get("agent_id") if isinstance(item, dict) else None
            if not isinstance(agent_id, str) or agent_id not in self.records or agent_id in rows:
                continue  # another host's device
            x = decode_f32(item.get("x_f32"), self.models.in_features, MAX_FORECAST_ROWS)
            if x is None:
                raise PayloadError("malformed", f"forecast input of {agent_id} is not whole finite rows")
            rows[agent_id] = x
        self.forecast_tick, self.forecast_inputs, self.forecast_answered = tick, rows, False
        self._maybe_forecast()

    def _maybe_forecast(self) -> None:
        """Once the tick, both plans and every on-device variant are here: install, forecast, answer."""
        models, inputs = self.models, self.forecast_inputs
        if models is None or inputs is None or self.forecast_answered:
            return
        compression, deployment = (
            self.plans.get(models.compression_plan),
            self.plans.get(models.deployment_plan),
        )
        if compression is None or deployment is None:
            return
        mine = sorted(a for a, where in deployment["plan"].items() if where == "device" and a in self.records)
        if not mine:  # none of this host's devices runs the model itself: the network expects nothing
            self.forecast_answered = True
            return
        entries = {a: compression["plan"].get(a) for a in mine}
        if any(not isinstance(e, dict) for e in entries.values()):
            self.forecast_answered = True
            raise PayloadError("malformed", "an on-device model user has no variant in the compression plan")
        if any(e["model"] not in self.variants for e in entries.values()):
            return  # a model is still on its way
        self.forecast_answered = True
        results = []
        for agent_id in mine:
            variant = self.variants[entries[agent_id]["model"]]
            self.installed[agent_id] = variant
            result: dict[str, Any] = {
                "agent_id": agent_id,
                "variant": variant.name,
                "model_sha256": variant.sha256,
            }
            if agent_id in inputs:  # fixed row blocks: the same bits in any process and thread count
                x = torch.from_numpy(inputs[agent_id])
                probs = torch.softmax(batch_invariant_logits(models.net, variant.params, x), dim=1)
                result["probs_f32"] = encode_features(probs.numpy())
            results.append(result)
        body = {
            "schema": FORECAST_SCHEMA,
            "run_id": self.topics.run_id,
            "host": self.host_id,
            "tick": self.forecast_tick,
            "results": results,
        }
        topic = self.topics.request(models.forecast_service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.credentials.sign(self.host_id, t, d))
        self.bus.publish(topic, encode_json(signed), qos=1)

    # ---- the data service --------------------------------------------------------------------------

    def _on_tick(self, doc: Mapping[str, Any]) -> None:
        tick = doc.get("tick")
        if (
            not isinstance(tick, int)
            or isinstance(tick, bool)
            or tick < 0
            or doc.get("run_id") != self.topics.run_id
        ):
            raise PayloadError("malformed", "ledger tick has a wrong index or run")
        if tick <= self.last_tick:
            raise PayloadError("duplicate", f"ledger tick {tick} already answered")
        self.last_tick = tick
        batch = []
        for agent_id, days in self.records.items():  # one record at a time: the data service's unit of work
            if tick >= len(days):
                continue
            for copy, record in enumerate(days[tick]):
                collected = self.collectors[agent_id].collect(agent_id, record)
                batch.append(
                    {
                        "agent_id": agent_id,
                        "copy": copy,
                        "released": collected.released,
                        "features_f32": encode_features(collected.features),
                        "lossless": collected.lossless,
                        "near_duplicate": collected.near_duplicate,
                    }
                )
        body = {
            "schema": LEDGER_SCHEMA,
            "run_id": self.topics.run_id,
            "host": self.host_id,
            "tick": tick,
            "records": batch,
        }
        topic = self.topics.request(self.service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.credentials.sign(self.host_id, t, d))
        self.bus.publish(topic, encode_json(signed), qos=1)
