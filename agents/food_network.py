"""Network side of the food-cycle services (paper §2.3.3): data, demand model, plans, each with QoAIS.

- :class:`FoodDataService` ticks the collection (one tick = one day of ledgers), waits for every ledger
  host's signed batch, validates it and sums it into the data service's ledger
  (:class:`twin.services.data_management.DataServiceLedger`); it keeps each shop's reported sales.
- :class:`ShopFederation` is a :class:`NetworkAgent` whose clients are the shops only.
- :class:`FoodPlanner` runs once both are done: it builds the compressed variants of the federated
  model (:mod:`twin.services.compression`) and publishes each over MQTT (the model exchange, signed and
  retained; int8 weights and pruning bitmasks as they are, :func:`encode_wire_model`), so a variant's
  size is the payload actually sent and its accuracy that of the model decoded from those bytes; it
  picks one per model user by its link and compute, places each user's model
  (:mod:`twin.services.deployment`) and publishes both plans. Shops whose model runs on the device
  forecast next week's demand **on the device** (:class:`DeviceForecasts`: their host decodes the
  variant from the wire and answers with its probabilities and the SHA-256 of the model it ran, which
  must be what was sent); the full model forecasts for edge and cloud. Then it allocates stock and
  plans routes (:mod:`twin.services.optimisation`) against the baseline, publishes that plan (signed
  JSON, retained) and ends the run.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch import nn
from torch.func import functional_call

from agents.food_cycle import (
    FORECAST_SCHEMA,
    FORECAST_TICK_SCHEMA,
    LEDGER_SCHEMA,
    PLAN_SCHEMA,
    decode_f32,
    encode_features,
)
from agents.host_batches import accept_host_batch
from agents.network import NetworkAgent
from broker.bus import Message
from broker.codec import MODEL_SCHEMA, content_digest, decode_model
from broker.json_codec import encode_json
from twin.auth import sign_document
from twin.energy import NETWORK
from twin.kpi import LinkProfile
from twin.learning.cohort import predict_proba
from twin.qoais import ServiceReport
from twin.services.compression import (
    CompressionChoice,
    CompressionConfig,
    CompressionTargets,
    DeviceBudget,
    ModelVariant,
    choose_variant,
    compression_report,
    compression_summary,
    make_variants,
    wire_bits,
)
from twin.services.data_management import DataServiceLedger, DataServiceTargets, data_service_report
from twin.services.deployment import (
    DeploymentConfig,
    DeploymentDecision,
    DeploymentTargets,
    InferenceDemand,
    decide,
    deployment_report,
    deployment_summary,
)
from twin.services.optimisation import (
    OptimisationConfig,
    OptimisationOutcome,
    OptimisationTargets,
    allocate,
    optimisation_report,
    plan_trips,
    score_policy,
)

if TYPE_CHECKING:
    from agents.device import Device
    from twin.model import TwinModel

MAX_BATCH_BYTES = 1 << 26


class FoodDataService:
    """Collection ticks, validation, the data service's ledger and each shop's reported daily sales."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        ledger: DataServiceLedger,
        targets: DataServiceTargets,
        members: dict[str, set[str]],
        ticks: int,
        interval_s: float,
        sales_column: int,
    ) -> None:
        self.model = model
        self.service = service
        self.ledger = ledger
        self.targets = targets
        self.members = {h: set(a) for h, a in members.items() if a}
        self.ticks = ticks
        self.interval_s = interval_s
        self.sales_column = sales_column
        self.width = len(ledger.schema.features)
        self.tick_index = 0
        self.done = False
        self.on_done: list[Callable[[], None]] = []
        self.reported: dict[tuple[str, int], np.ndarray] = {}
        """(agent id, tick) → standardised features of the first copy received."""
        self.records: list[dict[str, Any]] = []
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def set_members(self, members: dict[str, set[str]]) -> None:
        """Which host holds which organisations (when they move to ``--workers``); forecasts ask the same."""
        self.members = {h: set(a) for h, a in members.items() if a}

    def start(self, at_s: float) -> None:
        """Schedule the first collection tick."""
        self.model.schedule_event(self.tick, at=at_s)

    def tick(self) -> None:
        """One day of ledgers: ask, wait for every host's batch, count it in, keep the shops' sales."""
        model = self.model
        self._batches, self._waiting = {}, True
        doc = {
            "schema": "twin.inference.tick.v1",
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
        }
        topic = model.topics.tick(self.service)
        model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what=f"ledgers of day {self.tick_index}",
            progress=lambda: len(self._batches),
        )
        self._waiting = False
        batch = sorted(
            (r for b in self._batches.values() for r in b), key=lambda r: (r["agent_id"], r["copy"])
        )
        self.ledger.add(
            [r["released"] for r in batch],
            [r["lossless"] for r in batch],
            [r["near_duplicate"] for r in batch],
        )
        bits = sum(r["bits"] for r in batch)
        self.ledger.released_bits += float(bits)
        for r in batch:
            self.reported.setdefault((r["agent_id"], self.tick_index), r["x"])
        summary = self.ledger.summary()
        self.records.append(
            {
                "tick": self.tick_index,
                "sim_time_s": float(model.time),
                "records": len(batch),
                "lossless": sum(bool(r["lossless"]) for r in batch),
                "near_duplicates": sum(bool(r["near_duplicate"]) for r in batch),
                "released_bits": float(bits),
                "completeness": summary.get("completeness", math.nan),
                "redundancy_share": summary.get("redundancy_share", math.nan),
                "k_anonymity": summary.get("k_anonymity", math.nan),
            }
        )
        self.tick_index += 1
        if self.tick_index >= self.ticks:
            self.done = True
            for callback in self.on_done:
                callback()
            return
        model.schedule_event(self.tick, at=model.time + self.interval_s)

    def reported_units(self, agent_id: str, tick: int) -> float:
        """The sales a source reported for ``tick`` (imputed reference mean when lost or missing)."""
        x = self.reported.get((agent_id, tick))
        schema = self.ledger.schema
        z = 0.0 if x is None else float(x[self.sales_column])
        return schema.feature_mean[self.sales_column] + z * schema.feature_std[self.sales_column]

    def summary(self) -> dict[str, float]:
        """The data service's KPIs so far."""
        return self.ledger.summary()

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the data service."""
        return data_service_report(
            self.service, self.summary(), self.targets, tls=tls, authenticated=authenticated
        )

    def _on_message(self, message: Message) -> None:
        got = accept_host_batch(self, message, schema=LEDGER_SCHEMA, max_bytes=MAX_BATCH_BYTES)
        if got is None:
            return
        host_id, doc = got
        stats = self.model.bus.stats
        records = self._validate(host_id, doc.get("records"))
        if records is None:
            stats.reject("malformed")
            return
        self._batches[host_id] = records
        self.model.accepted += 1

    def _validate(self, host_id: str, records: Any) -> list[dict[str, Any]] | None:
        """The host's records if each is well-formed and from one of its organisations, else None."""
        if not isinstance(records, list):
            return None
        for r in records:
            if not isinstance(r, dict) or r.get("agent_id") not in self.members[host_id]:
                return None
            if not isinstance(r.get("copy"), int) or not isinstance(r.get("released"), dict):
                return None
            if not isinstance(r.get("lossless"), bool) or not isinstance(r.get("near_duplicate"), bool):
                return None
            x = _decode_features(r.get("features_f32"), self.width)
            if x is None:
                return None
            r["bits"] = 8 * len(encode_json(r))
            r["x"] = x
        return records


def _decode_features(text: object, width: int) -> np.ndarray | None:
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * width:
        return None
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return values if bool(np.isfinite(values).all()) else None


class ShopFederation(NetworkAgent):
    """Federated training of the demand model across the shops (the other devices do not train)."""

    def __init__(self, *args: Any, clients: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients = sorted(clients)
        self.done = False
        self.on_done: list[Callable[[], None]] = []

    def candidates(self) -> list[Device]:
        """The shops, in id order."""
        return [self.model.device(a) for a in self.clients]

    def on_rounds_limit(self) -> None:
        """The last round is done: the planner may start (the run goes on until it has planned)."""
        self.done = True
        for callback in self.on_done:
            callback()


@dataclass(frozen=True, slots=True)
class ModelUser:
    """A device that uses the demand model, and its budgets (by kind)."""

    agent_id: str
    kind: str
    modem_bps: float
    """The device's modem limit: its downlink and uplink are at most this (∞: the radio's rate)."""
    memory_bits: float
    max_download_s: float
    max_inference_s: float
    rows: int
    deadline_s: float


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What the planner needs of the city: the planning week, sites and depots, the shops' features."""

    shops: tuple[str, ...]
    demand: np.ndarray
    """(shops, days) realised demand of the planning week."""
    features: Callable[[int, np.ndarray], np.ndarray]
    """(shop index, last week's reported sales per day) → the model's input rows of the planning week."""
    level_units: np.ndarray
    shop_xy: np.ndarray
    shop_depot: np.ndarray
    depots_xy: np.ndarray
    waste_depot_xy: np.ndarray
    last_week_ticks: tuple[int, ...]
    """Collection ticks of the same weekdays a week before each planning day."""


def _wire_payload(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    out = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    int8 = any(t.dtype == torch.int8 for t in out.values())
    meta = {"schema": MODEL_SCHEMA, "wire_dtype": "int8" if int8 else "fp32"}
    meta.update({str(k): str(v) for k, v in metadata.items() if k != "auth"})
    return out, meta


def encode_wire_model(
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    sign: Callable[[bytes], str] | None = None,
) -> bytes:
    """A variant's wire tensors as one model message (safetensors, ``twin.model.v1``), dtypes as they are.

    int8 tensors with their ``::scale``, uint8 bitmasks and float32 values travel as such (the model
    codec would make every tensor one wire dtype); the envelope, content digest and ``auth`` are the
    codec's (:func:`broker.codec.content_digest`), so :func:`broker.codec.decode_model` reads it.
    """
    out, meta = _wire_payload(tensors, metadata)
    if sign is not None:
        meta["auth"] = sign(content_digest(out, meta))
    return bytes(st_save(out, metadata=meta))


def wire_model_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """The content digest of :func:`encode_wire_model`'s message (what a receiver's decode reports)."""
    out, meta = _wire_payload(tensors, metadata)
    return content_digest(out, meta)


class DeviceForecasts:
    """The network's end of on-device forecasting: one signed batch per host, checked against what was sent.

    A host's batch (``twin.food.forecast.request.v1``) must name exactly the host's devices placed on
    the device, each with the variant it was given and the SHA-256 of the model message that carried it
    (so a device that runs anything else is refused), and for each device asked to forecast one row of
    class probabilities per input row. A batch that fails any check is refused whole (``malformed``).
    """

    def __init__(self, model: TwinModel, *, service: str, n_classes: int) -> None:
        self.model = model
        self.service = service
        self.n_classes = n_classes
        self.members: dict[str, set[str]] = {}
        """Host → its devices that run their model themselves."""
        self.tick_index = 0
        self.expected: dict[str, tuple[str, str]] = {}
        """Device → (its variant, hex SHA-256 of the message that carried it)."""
        self.rows: dict[str, int] = {}
        """Device → input rows it was asked to forecast."""
        self.probs: dict[str, np.ndarray] = {}
        self._batches: dict[str, dict[str, np.ndarray | None]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)

    def collect(
        self,
        members: dict[str, set[str]],
        expected: dict[str, tuple[str, str]],
        inputs: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Ask every host to forecast ``inputs`` on its devices; wait for all; device → probabilities."""
        model = self.model
        self.members, self.expected = members, expected
        self.rows = {a: int(x.shape[0]) for a, x in inputs.items()}
        self._batches, self._waiting = {}, True
        doc = {
            "schema": FORECAST_TICK_SCHEMA,
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
            "inputs": [{"agent_id": a, "x_f32": encode_features(x)} for a, x in sorted(inputs.items())],
        }
        topic = model.topics.tick(self.service)
        model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what="on-device forecasts",
            progress=lambda: len(self._batches),
        )
        self._waiting = False
        self.tick_index += 1
        self.probs = {a: p for b in self._batches.values() for a, p in b.items() if p is not None}
        return self.probs

    def confirmed(self) -> set[str]:
        """Devices whose host confirmed running the model message sent for them."""
        return {a for b in self._batches.values() for a in b}

    def _on_message(self, message: Message) -> None:
        got = accept_host_batch(self, message, schema=FORECAST_SCHEMA, max_bytes=MAX_BATCH_BYTES)
        if got is None:
            return
        host_id, doc = got
        results = self._validate(host_id, doc.get("results"))
        if results is None:
            self.model.bus.stats.reject("malformed")
            return
        self._batches[host_id] = results
        self.model.accepted += 1

    def _validate(self, host_id: str, results: Any) -> dict[str, np.ndarray | None] | None:
        if not isinstance(results, list):
            return None
        want, seen = self.members[host_id], dict[str, np.ndarray | None]()
        for r in results:
            agent_id = r.get("agent_id") if isinstance(r, dict) else None
            if agent_id not in want or agent_id in seen:
                return None
            if (r.get("variant"), r.get("model_sha256")) != self.expected[agent_id]:
                return None  # not the model sent for it
            rows, text = self.rows.get(agent_id), r.get("probs_f32")
            if rows is None:
                if text is not None:
                    return None
                seen[agent_id] = None
                continue
            probs = decode_f32(text, self.n_classes, rows)
            if probs is None or probs.shape[0] != rows or not bool(((probs >= 0) & (probs <= 1)).all()):
                return None
            seen[agent_id] = probs
        return seen if seen.keys() == want else None


class ServiceRecords:
    """Records and QoAIS of one of the planner's services (what :attr:`TwinModel.services` lists)."""

    def __init__(
        self,
        service: str,
        summary: Callable[[], dict[str, float]],
        qoais: Callable[[bool, bool], ServiceReport],
    ) -> None:
        self.service = service
        self.records: list[dict[str, Any]] = []
        self._summary = summary
        self._qoais = qoais

    def summary(self) -> dict[str, float]:
        """The service's KPIs."""
        return self._summary()

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """The service's QoAIS report."""
        return self._qoais(tls, authenticated)


class FoodPlanner:
    """Compression, deployment and optimisation of the learned demand model, once data and model are ready."""

    def __init__(
        self,
        model: TwinModel,
        *,
        federation: ShopFederation,
        data: FoodDataService,
        users: Sequence[ModelUser],
        inputs: PlanInputs,
        flops_per_row: float,
        input_bits_per_row: float,
        services: tuple[str, str, str],
        compression: tuple[CompressionConfig, CompressionTargets],
        deployment: tuple[DeploymentConfig, DeploymentTargets],
        optimisation: tuple[OptimisationConfig, OptimisationTargets],
    ) -> None:
        self.model = model
        self.federation = federation
        self.data = data
        self.users = sorted(users, key=lambda u: u.agent_id)
        self.inputs = inputs
        self.flops_per_row = flops_per_row
        self.input_bits_per_row = input_bits_per_row
        self.compression_cfg, self.compression_targets = compression
        self.deployment_cfg, self.deployment_targets = deployment
        self.optimisation_cfg, self.optimisation_targets = optimisation
        self.variants: tuple[ModelVariant, ...] = ()
        """The variants offered, each as published (``size_bits``: the payload sent)."""
        self.variant_sha256: dict[str, str] = {}
        """Variant → hex SHA-256 of the model message that carries it (what a device must report)."""
        self.choices: list[CompressionChoice] = []
        self.decisions: list[DeploymentDecision] = []
        self.outcome: OptimisationOutcome | None = None
        self.policy_trips: list[list[list[int]]] = []
        """Optimised delivery trips of the first planning day, per depot (shop indices)."""
        self.stock: np.ndarray = np.zeros((0, 0))
        """Units allocated to each shop on each planning day by the learned policy."""
        self.planned = False
        self.on_plan: list[Callable[[], None]] = []
        """Called once the plans are made (e.g. to draw the planned routes)."""
        opt, comp, dep = services
        self.optimisation = ServiceRecords(
            opt,
            lambda: self.outcome.summary() if self.outcome else {},
            lambda tls, auth: optimisation_report(
                opt, self.outcome, self.optimisation_targets, tls=tls, authenticated=auth
            ),
        )
        self.compression = ServiceRecords(
            comp,
            lambda: compression_summary(self.variants, self.choices),
            lambda tls, auth: compression_report(
                comp,
                self.variants,
                self.choices,
                self.compression_targets,
                self.compression_cfg,
                tls=tls,
                authenticated=auth,
            ),
        )
        self.deployment = ServiceRecords(
            dep,
            lambda: deployment_summary(self.decisions),
            lambda tls, auth: deployment_report(
                dep, self.decisions, self.deployment_targets, tls=tls, authenticated=auth
            ),
        )
        model.services += [self.optimisation, self.compression, self.deployment]
        self.forecasts = DeviceForecasts(model, service=dep, n_classes=federation.task.n_classes)
        self._choice_records: dict[str, dict[str, Any]] = {}
        federation.on_done.append(self.maybe_plan)
        data.on_done.append(self.maybe_plan)

    def plan_topic(self, service: str) -> str:
        """Where the plan of ``service`` is published (retained)."""
        return f"{self.model.topics.service_root(service)}/plan"

    def maybe_plan(self) -> None:
        """Plan one second after both the data and the model are ready."""
        if self.federation.done and self.data.done and not self.planned:
            self.planned = True
            self.model.schedule_event(self.plan, at=self.model.time + 1.0)

    def plan(self) -> None:
        """Compress, choose and place per user, forecast, allocate and route; publish the plans; end the run.

        The variants and the compression and deployment plans are published first: the devices that run
        the model themselves need them to forecast.
        """
        self._compress()
        choice_of = self._choose_and_place()
        self._publish((self.compression.service, self.deployment.service))
        self._optimise(choice_of)
        self._publish((self.optimisation.service,))
        for callback in self.on_plan:
            callback()
        self.model.running = False

    def _compress(self) -> None:
        """Every variant, measured as decoded from its message, then published once (signed, retained)."""
        net, params = self.federation.net, self.federation.global_params
        task, service = self.federation.task, self.compression.service
        max_bytes = self.model.bus_cfg.max_payload_bytes

        def as_decoded(name: str, wire: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
            payload = encode_wire_model(wire, {"service": service, "variant": name})
            return decode_model(payload, max_bytes=max_bytes).tensors

        offered = make_variants(
            params,
            flops_per_sample=self.flops_per_row,
            evaluate=lambda p: _accuracy(net, p, task.test_x, task.test_y),
            config=self.compression_cfg,
            transport=as_decoded,
        )
        self.variants = tuple(self._publish_variant(i, v) for i, v in enumerate(offered))
        for i, v in enumerate(self.variants):
            self.compression.records.append(
                {
                    "variant": v.name,
                    "model_index": i,
                    "weight_bits": float(v.weight_bits),
                    "sparsity": v.sparsity,
                    "size_bits": float(v.size_bits),
                    "tensor_bits": float(wire_bits(v.wire)),
                    "accuracy": v.accuracy,
                    "accuracy_loss": self.variants[0].accuracy - v.accuracy,
                }
            )

    def _publish_variant(self, index: int, variant: ModelVariant) -> ModelVariant:
        """Publish ``variant`` on ``ml/{compression}/{index}/global``; it, sized by the payload sent."""
        model, service = self.model, self.compression.service
        meta = {"round": index, "service": service, "variant": variant.name, "sim_time_s": float(model.time)}
        topic = model.topics.global_model(service, index)
        sent = model.exchange.send(topic, variant.wire, meta, retain=True, encoder=encode_wire_model)
        self.variant_sha256[variant.name] = wire_model_digest(variant.wire, meta).hex()
        return replace(variant, size_bits=8 * sent)

    def _choose_and_place(self) -> dict[str, CompressionChoice]:
        """Each model user's variant (by its link, memory and compute) and placement (by T and E)."""
        choice_of: dict[str, CompressionChoice] = {}
        link_power = self.model.link_cfg.ue_radio_power_w
        for user in self.users:
            device = self.model.device(user.agent_id)
            budget = DeviceBudget(
                agent_id=user.agent_id,
                downlink_bps=min(device.downlink_bps, user.modem_bps),
                radio_power_w=link_power,
                compute=device.compute,
                memory_bits=user.memory_bits,
                max_download_s=user.max_download_s,
                max_inference_s=user.max_inference_s,
                rows=user.rows,
            )
            choice = choose_variant(self.variants, budget)
            choice_of[user.agent_id] = choice
            self.choices.append(choice)
            record = {**choice.record(), "kind": user.kind, "installed": False}
            self._choice_records[user.agent_id] = record
            self.compression.records.append(record)
            if math.isfinite(choice.download_j):
                self.model.energy.add(
                    user.agent_id, "downlink", choice.download_j, service=self.compression.service
                )
            demand = InferenceDemand(
                agent_id=user.agent_id,
                kind=user.kind,
                rows=user.rows,
                input_bits_per_row=self.input_bits_per_row,
                flops_per_row=self.flops_per_row,
                deadline_s=user.deadline_s,
                compute=device.compute,
                uplink=LinkProfile(min(device.uplink_bps, user.modem_bps), link_power),
                device_flops_per_row=choice.variant.flops_per_sample if choice.fits else None,
                device_speedup=choice.variant.speedup,
                device_energy_ratio=choice.variant.energy_ratio,
            )
            decision = decide(demand, edge=self.model.edge_profile, config=self.deployment_cfg)
            self.decisions.append(decision)
            self.deployment.records.append(decision.record())
            self._book(decision)
        return choice_of

    def _book(self, decision: DeploymentDecision) -> None:
        """One request's energy at the chosen placement, on the device or the network."""
        cost, service = decision.chosen, self.deployment.service
        energy = self.model.energy
        if not math.isfinite(cost.energy_j):
            return
        if cost.ue_j:
            energy.add(decision.agent_id, "inference", cost.ue_j, service=service)
        if cost.tx_j:
            energy.add(decision.agent_id, "uplink", cost.tx_j, service=service)
        if cost.net_j:
            energy.add(NETWORK, "inference", cost.net_j, service=service)

    def _optimise(self, choice_of: dict[str, CompressionChoice]) -> None:
        inputs = self.inputs
        net, full = self.federation.net, self.federation.global_params
        reported_all = np.zeros(inputs.demand.shape)
        rows: dict[str, np.ndarray] = {}
        for i, shop in enumerate(inputs.shops):
            reported_all[i] = [self.data.reported_units(shop, t) for t in inputs.last_week_ticks]
            rows[shop] = inputs.features(i, reported_all[i])
        on_device = {d.agent_id for d in self.decisions if d.placement == "device"}
        hosts = {h: on_device & set(members) for h, members in self.data.members.items()}
        hosts = {h: agents for h, agents in hosts.items() if agents}
        device_probs: dict[str, np.ndarray] = {}
        if hosts:
            expected = {
                a: (choice_of[a].variant.name, self.variant_sha256[choice_of[a].variant.name])
                for a in on_device
            }
            device_probs = self.forecasts.collect(
                hosts, expected, {s: x for s, x in rows.items() if s in on_device}
            )
            for agent_id in self.forecasts.confirmed():
                self._choice_records[agent_id]["installed"] = True
        forecast = np.zeros(inputs.demand.shape)
        for i, shop in enumerate(inputs.shops):
            if shop in on_device:  # computed on the device, with the model it decoded from the wire
                probs = device_probs[shop]
            else:  # on the edge or in the cloud: the full model
                probs = predict_proba(net, full, torch.from_numpy(rows[shop])).detach().numpy()
            forecast[i] = probs @ inputs.level_units
        cfg = self.optimisation_cfg
        stock = np.stack([allocate(f, safety_margin=cfg.safety_margin) for f in forecast.T], axis=1)
        baseline = np.stack([allocate(r, safety_margin=cfg.baseline_margin) for r in reported_all.T], axis=1)
        common: dict[str, Any] = {
            "demand": inputs.demand,
            "site_xy": inputs.shop_xy,
            "site_depot": inputs.shop_depot,
            "depots_xy": inputs.depots_xy,
            "waste_depot_xy": inputs.waste_depot_xy,
            "config": cfg,
        }
        policy = score_policy(
            "learned demand model, planned routes", stock=stock, routing="optimised", **common
        )
        base = score_policy("last week's sales, fixed routes", stock=baseline, routing="fixed", **common)
        self.outcome = OptimisationOutcome(policy, base)
        for day in range(inputs.demand.shape[1]):
            for name, alloc in (("policy", stock[:, day]), ("baseline", baseline[:, day])):
                demand = inputs.demand[:, day]
                self.optimisation.records.append(
                    {
                        "policy": name,
                        "day": day,
                        "stock_units": float(alloc.sum()),
                        "demand_units": float(demand.sum()),
                        "waste_units": float(np.maximum(alloc - demand, 0).sum()),
                        "unmet_units": float(np.maximum(demand - alloc, 0).sum()),
                        "forecast_units": float(forecast[:, day].sum())
                        if name == "policy"
                        else float(alloc.sum()),
                    }
                )
        self.policy_trips = [
            [
                list(map(int, np.flatnonzero(inputs.shop_depot == d)[t]))
                for t in plan_trips(
                    inputs.depots_xy[d],
                    inputs.shop_xy[inputs.shop_depot == d],
                    stock[inputs.shop_depot == d, 0],
                    cfg.vehicle_capacity_units,
                    "optimised",
                )
            ]
            for d in range(len(inputs.depots_xy))
        ]
        self.stock = stock

    def _publish(self, services: tuple[str, ...]) -> None:
        """The plans of ``services``, signed and retained, for the organisations (and any external tool)."""
        model = self.model
        bodies: dict[str, Callable[[], dict[str, Any]]] = {
            self.optimisation.service: lambda: {
                "allocation_units": {
                    s: [int(v) for v in self.stock[i]] for i, s in enumerate(self.inputs.shops)
                },
                "trips_day_0": [
                    [[self.inputs.shops[i] for i in trip] for trip in depot] for depot in self.policy_trips
                ],
            },
            self.compression.service: lambda: {
                c.agent_id: {
                    "variant": c.variant.name,
                    "size_bits": c.variant.size_bits,
                    "model": next(i for i, v in enumerate(self.variants) if v is c.variant),
                }
                for c in self.choices
            },
            self.deployment.service: lambda: {d.agent_id: d.placement for d in self.decisions},
        }
        for service in services:
            doc = {
                "schema": PLAN_SCHEMA,
                "run_id": model.run_id,
                "service": service,
                "sim_time_s": float(model.time),
                "plan": bodies[service](),
            }
            topic = self.plan_topic(service)
            model.bus.publish(
                topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1, retain=True
            )


def _accuracy(net: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((functional_call(net, params, (x,)).argmax(dim=1) == y).float().mean())
