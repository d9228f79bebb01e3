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
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace

from agents.device import Device
from agents.robotaxi import Robotaxi
from broker.bus import Bus, Message
from broker.json_codec import decode_json, encode_json
from broker.topics import Topics
from twin.auth import Credentials, json_digest, sign_document
from twin.errors import PayloadError
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.services.data_management import DataCollector

log = logging.getLogger(__name__)

LEDGER_SCHEMA = "twin.food.ledger.v1"
PLAN_SCHEMA = "twin.food.plan.v1"


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
    ) -> None:
        """``collectors`` maps each organisation (agent id) to the data collector of its kind."""
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

    def subscriptions(self) -> tuple[str, ...]:
        """Topics this host listens on: collection ticks and the network's plans."""
        return (self.topics.tick(self.service), *self.plan_topics)

    def handles(self, topic: str) -> bool:
        """Whether ``topic`` is addressed to this host."""
        return topic in self.subscriptions()

    def on_message(self, message: Message) -> None:
        """Handle a tick or a plan; bad input is counted, never raised."""
        try:
            doc = decode_json(message.payload, max_bytes=1 << 24)
            if not self.credentials.verify_network(message.topic, json_digest(doc), doc.get("auth")):
                raise PayloadError("forged", f"message on {message.topic} not signed by the run's network")
            if message.topic in self.plan_topics:
                if doc.get("schema") != PLAN_SCHEMA or doc.get("run_id") != self.topics.run_id:
                    raise PayloadError("malformed", "food plan has a wrong schema or run")
                self.plans[message.topic] = doc
            else:
                self._on_tick(doc)
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)
            log.warning("ledger host %s rejected %s on %s: %s", self.host_id, exc.kind, message.topic, exc)

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
