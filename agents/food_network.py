"""Network side of the food-cycle services (paper §2.3.3): data, demand model, plans, each with QoAIS.

- :class:`FoodDataService` ticks the collection (one tick = one day of ledgers), waits for every ledger
  host's signed batch, validates it and sums it into the data service's ledger
  (:class:`twin.services.data_management.DataServiceLedger`); it keeps each shop's reported sales.
- :class:`ShopFederation` is a :class:`NetworkAgent` whose clients are the shops only.
- :class:`FoodPlanner` runs once both are done: it builds the compressed variants of the federated
  model (:mod:`twin.services.compression`) and picks one per model user by its link and compute, places
  each user's model (:mod:`twin.services.deployment`), forecasts next week's demand of every shop with
  the model *where it runs* (the device's variant, or the full model on edge/cloud), allocates stock and
  plans routes (:mod:`twin.services.optimisation`) against the baseline, publishes the three plans
  (signed JSON, retained) and ends the run.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from agents.food_cycle import LEDGER_SCHEMA, PLAN_SCHEMA
from agents.host_batches import accept_host_batch
from agents.network import NetworkAgent
from broker.bus import Message
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
        """Compress, place, forecast, allocate and route; publish the plans; end the run."""
        net, params = self.federation.net, self.federation.global_params
        task = self.federation.task
        self.variants = make_variants(
            params,
            flops_per_sample=self.flops_per_row,
            evaluate=lambda p: _accuracy(net, p, task.test_x, task.test_y),
            config=self.compression_cfg,
        )
        for v in self.variants:
            self.compression.records.append(
                {
                    "variant": v.name,
                    "weight_bits": float(v.weight_bits),
                    "sparsity": v.sparsity,
                    "size_bits": float(v.size_bits),
                    "accuracy": v.accuracy,
                    "accuracy_loss": self.variants[0].accuracy - v.accuracy,
                }
            )
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
            self.compression.records.append({**choice.record(), "kind": user.kind})
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
        self._optimise(choice_of)
        self._publish()
        for callback in self.on_plan:
            callback()
        self.model.running = False

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
        decision_of = {d.agent_id: d for d in self.decisions}
        forecast = np.zeros(inputs.demand.shape)
        reported_all = np.zeros(inputs.demand.shape)
        for i, shop in enumerate(inputs.shops):
            reported = np.array([self.data.reported_units(shop, t) for t in inputs.last_week_ticks])
            reported_all[i] = reported
            decision, choice = decision_of.get(shop), choice_of.get(shop)
            on_device = decision is not None and choice is not None and decision.placement == "device"
            params = choice.variant.params if on_device and choice is not None else full
            x = torch.from_numpy(inputs.features(i, reported))
            probs = predict_proba(net, params, x).numpy()
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

    def _publish(self) -> None:
        """The three plans, signed and retained, for the organisations (and any external tool)."""
        model = self.model
        documents = {
            self.optimisation.service: {
                "allocation_units": {
                    s: [int(v) for v in self.stock[i]] for i, s in enumerate(self.inputs.shops)
                },
                "trips_day_0": [
                    [[self.inputs.shops[i] for i in trip] for trip in depot] for depot in self.policy_trips
                ],
            },
            self.compression.service: {
                c.agent_id: {"variant": c.variant.name, "size_bits": c.variant.size_bits}
                for c in self.choices
            },
            self.deployment.service: {d.agent_id: d.placement for d in self.decisions},
        }
        for service, body in documents.items():
            doc = {
                "schema": PLAN_SCHEMA,
                "run_id": model.run_id,
                "service": service,
                "sim_time_s": float(model.time),
                "plan": body,
            }
            topic = self.plan_topic(service)
            model.bus.publish(
                topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1, retain=True
            )


def _accuracy(net: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((functional_call(net, params, (x,)).argmax(dim=1) == y).float().mean())
