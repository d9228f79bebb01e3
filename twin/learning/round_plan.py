"""The round plan: what the network tells device hosts at the start of a federated round.

Published retained on ``…/ml/{service}/{round}/select`` before the global model. It names the devices
that train this round and how (local epochs, batch size, learning rate, proximal term), and the model's
architecture, so that any client — a worker, a real device — can take part without sharing memory with
the network. JSON schema: ``twin/schemas/twin.fl.round.v1.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.json_codec import decode_json
from broker.topics import check_segment
from twin.auth import json_digest
from twin.errors import PayloadError

PLAN_SCHEMA = "twin.fl.round.v1"
MAX_PLAN_BYTES = 8 << 20  # 10^5 selected device ids of up to ~60 characters


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of the service's model (an MLP: in → hidden → hidden → classes)."""

    kind: str
    in_features: int
    hidden: int
    n_classes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind,
            "in_features": self.in_features,
            "hidden": self.hidden,
            "n_classes": self.n_classes,
        }


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """One round's plan."""

    run_id: str
    service: str
    round_index: int
    sim_time_s: float
    deadline_s: float
    selected: tuple[str, ...]
    local_epochs: int
    batch_size: int
    lr: float
    proximal_mu: float
    model: ModelSpec

    def to_document(self) -> dict[str, Any]:
        """The plan as a JSON document (without ``auth``: the sender signs it)."""
        return {
            "schema": PLAN_SCHEMA,
            "run_id": self.run_id,
            "service": self.service,
            "round": self.round_index,
            "sim_time_s": self.sim_time_s,
            "deadline_s": self.deadline_s,
            "selected": list(self.selected),
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "proximal_mu": self.proximal_mu,
            "model": self.model.to_dict(),
        }


def parse_round_plan(
    payload: bytes,
    *,
    run_id: str,
    service: str,
    round_index: int,
    verify: Callable[[bytes, object], bool] | None = None,
) -> RoundPlan:
    """Validate a round plan received on the topic of ``(run_id, service, round_index)``.

    ``verify(digest, tag)`` checks the network's ``auth`` tag over the plan first.

    Raises:
        PayloadError: ``oversized``, ``forged`` (not the network's), or ``malformed`` (wrong schema, a
            field of the wrong type or range, a plan that does not match its topic).
    """
    doc = decode_json(payload, max_bytes=MAX_PLAN_BYTES)
    if verify is not None and not verify(json_digest(doc), doc.get("auth")):
        raise PayloadError("forged", "round plan not signed by the run's network")
    if doc.get("schema") != PLAN_SCHEMA:
        raise PayloadError("malformed", f"round plan schema {doc.get('schema')!r} != {PLAN_SCHEMA!r}")
    if doc.get("run_id") != run_id or doc.get("service") != service or doc.get("round") != round_index:
        raise PayloadError("malformed", "round plan does not match its topic (run, service or round)")
    selected = doc.get("selected")
    if not isinstance(selected, list) or not all(isinstance(a, str) for a in selected):
        raise PayloadError("malformed", "round plan 'selected' is not a list of device ids")
    try:
        for agent_id in selected:
            check_segment(agent_id, "device id")
    except ValueError as exc:
        raise PayloadError("malformed", str(exc)) from exc
    model = doc.get("model")
    if not isinstance(model, dict):
        raise PayloadError("malformed", "round plan 'model' is not an object")
    return RoundPlan(
        run_id=run_id,
        service=service,
        round_index=round_index,
        sim_time_s=_number(doc, "sim_time_s", 0.0),
        deadline_s=_number(doc, "deadline_s", 0.0),
        selected=tuple(selected),
        local_epochs=_integer(doc, "local_epochs", 1, 10_000),
        batch_size=_integer(doc, "batch_size", 1, 1 << 20),
        lr=_number(doc, "lr", 0.0),
        proximal_mu=_number(doc, "proximal_mu", 0.0),
        model=ModelSpec(
            kind=str(model.get("kind")),
            in_features=_integer(model, "in_features", 1, 1 << 20),
            hidden=_integer(model, "hidden", 1, 1 << 16),
            n_classes=_integer(model, "n_classes", 2, 1 << 16),
        ),
    )


def _number(doc: dict[str, Any], key: str, low: float) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PayloadError("malformed", f"round plan {key!r} is not a finite number")
    if value < low:
        raise PayloadError("malformed", f"round plan {key!r} must be >= {low}")
    return float(value)


def _integer(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PayloadError("malformed", f"round plan {key!r} must be an integer in [{low}, {high}]")
    return value
