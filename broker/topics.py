"""The versioned MQTT topic tree (ARCHITECTURE.md, "MQTT (contract)").

All topics live under ``twin/v1/{run_id}/`` with no leading slash::

    twin/v1/{run_id}/meta                                   retained run description
    twin/v1/{run_id}/status                                 retained, last-will "aborted"
    twin/v1/{run_id}/kpi                                    run-level KPI records
    twin/v1/{run_id}/agents/{kind}/{agent_id}/telemetry
    twin/v1/{run_id}/agents/{kind}/{agent_id}/events
    twin/v1/{run_id}/ml/{service}/{round}/select            retained round plan: who trains, how (JSON)
    twin/v1/{run_id}/ml/{service}/{round}/global            retained global model (safetensors)
    twin/v1/{run_id}/ml/{service}/{round}/update/{agent_id} local update (safetensors)
    twin/v1/{run_id}/ml/{service}/{round}/updates/{host_id}.{part}  a host's packed updates (safetensors)
    twin/v1/{run_id}/svc/{service}/tick                     network → device hosts: sense now (JSON)
    twin/v1/{run_id}/svc/{service}/request/{host_id}        a host's requests of one tick (JSON batch)
    twin/v1/{run_id}/svc/{service}/response/{host_id}       network → host answers of one tick (JSON batch)

A model payload larger than the chunk limit is sent as a JSON manifest on ``…/manifest`` below its
topic and raw byte chunks on ``…/chunk/{index}``. Missing chunks are asked for again on
``twin/v1/{run_id}/ml/{service}/{round}/resend/{agent_id}`` (``agent_id`` is the one asked to send
again: a device for its update, ``network`` for the global model).

Device hosts subscribe to :meth:`Topics.device_filters` (round plans, global models, resend requests),
the network agent to :meth:`Topics.network_filters` (updates and resend requests addressed to it), so a
process that holds both never receives a message twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "twin/v1"
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:-]+$")


def check_segment(value: str, what: str) -> str:
    """Return ``value`` if it is a safe topic segment (no ``/``, ``+``, ``#`` or spaces).

    Raises:
        ValueError: when the segment would break the topic tree.
    """
    if not _SEGMENT.match(value):
        raise ValueError(f"{what} {value!r} must match {_SEGMENT.pattern} to be used in an MQTT topic")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one run."""

    run_id: str

    def __post_init__(self) -> None:
        check_segment(self.run_id, "run_id")

    @property
    def root(self) -> str:
        """Root of this run's topic tree."""
        return f"{PREFIX}/{self.run_id}"

    @property
    def meta(self) -> str:
        """Retained run description."""
        return f"{self.root}/meta"

    @property
    def status(self) -> str:
        """Retained run status; the last will sets it to ``aborted``."""
        return f"{self.root}/status"

    @property
    def kpi(self) -> str:
        """Run-level KPI records."""
        return f"{self.root}/kpi"

    def telemetry(self, kind: str, agent_id: str) -> str:
        """Per-agent telemetry topic."""
        return f"{self.root}/agents/{kind}/{agent_id}/telemetry"

    def events(self, kind: str, agent_id: str) -> str:
        """Per-agent event topic."""
        return f"{self.root}/agents/{kind}/{agent_id}/events"

    def global_model(self, service: str, round_index: int) -> str:
        """Retained global model of a federated round."""
        return f"{self.root}/ml/{service}/{round_index}/global"

    def update(self, service: str, round_index: int, agent_id: str) -> str:
        """A device's local update for a federated round."""
        return f"{self.root}/ml/{service}/{round_index}/update/{agent_id}"

    def update_batch(self, service: str, round_index: int, batch_id: str) -> str:
        """A device host's packed updates of a round (``batch_id`` = ``{host_id}.{part}``)."""
        return f"{self.root}/ml/{service}/{round_index}/updates/{batch_id}"

    def select(self, service: str, round_index: int) -> str:
        """Retained round plan of a federated round (who trains, local-training settings)."""
        return f"{self.root}/ml/{service}/{round_index}/select"

    def resend(self, service: str, round_index: int, agent_id: str) -> str:
        """Request to a device to send missing chunks of its update again."""
        return f"{self.root}/ml/{service}/{round_index}/resend/{agent_id}"

    def service_root(self, service: str) -> str:
        """Root of a request/response service's topics (e.g. two-stage inference)."""
        return f"{self.root}/svc/{service}"

    def tick(self, service: str) -> str:
        """The network tells device hosts to sense (one message per tick of a request service)."""
        return f"{self.service_root(service)}/tick"

    def request(self, service: str, host_id: str) -> str:
        """A device host's requests of one tick to a network service (e.g. escalated inferences)."""
        return f"{self.service_root(service)}/request/{host_id}"

    def response(self, service: str, host_id: str) -> str:
        """The network's answers to one host's requests of a tick."""
        return f"{self.service_root(service)}/response/{host_id}"

    def ml_filter(self, service: str) -> str:
        """Subscription filter for all model traffic of a service (observers, recorders)."""
        return f"{self.root}/ml/{service}/#"

    def network_filters(self, service: str) -> tuple[str, ...]:
        """What the network agent of ``service`` subscribes to: updates, and resends asked of it."""
        base = f"{self.root}/ml/{service}/+"
        return (f"{base}/update/#", f"{base}/updates/#", f"{base}/resend/network")

    def device_filters(self, service: str) -> tuple[str, ...]:
        """What a device host subscribes to for ``service``: round plans, global models, resends.

        ``…/global/#`` matches the whole global model and its manifest and chunks (MQTT's ``#`` matches
        the parent level too); a resend request addressed to ``network`` is filtered out by the host.
        """
        base = f"{self.root}/ml/{service}/+"
        return (f"{base}/select", f"{base}/global/#", f"{base}/resend/+")


@dataclass(frozen=True, slots=True)
class ModelTopic:
    """A parsed model-exchange topic."""

    service: str
    round_index: int
    kind: str  # "select", "global", "update", "updates" (a host's packed batch) or "resend"
    agent_id: str | None  # the device (update, resend), or the batch id ``{host}.{part}`` (updates)
    part: str  # "whole", "manifest" or "chunk"
    chunk_index: int | None


def parse_model_topic(topics: Topics, topic: str) -> ModelTopic | None:
    """Parse a topic under ``…/ml/``; ``None`` when it is not a well-formed model topic."""
    prefix = f"{topics.root}/ml/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) < 3 or not _is_index(parts[1]):
        return None
    service, round_index, kind, rest = parts[0], int(parts[1]), parts[2], parts[3:]
    agent_id: str | None = None
    if kind in ("update", "updates", "resend"):
        if not rest:
            return None
        agent_id, rest = rest[0], rest[1:]
    elif kind == "select":
        return ModelTopic(service, round_index, kind, None, "whole", None) if not rest else None
    elif kind != "global":
        return None
    if not rest:
        return ModelTopic(service, round_index, kind, agent_id, "whole", None)
    if rest == ["manifest"]:
        return ModelTopic(service, round_index, kind, agent_id, "manifest", None)
    if len(rest) == 2 and rest[0] == "chunk" and _is_index(rest[1]):
        return ModelTopic(service, round_index, kind, agent_id, "chunk", int(rest[1]))
    return None


def batch_host(batch_id: str) -> str:
    """The host that sent a packed batch: ``batch_id`` without its ``.{part}``."""
    return batch_id.rpartition(".")[0] or batch_id


def _is_index(segment: str) -> bool:
    """ASCII digits, at most 18 (``"²".isdigit()`` is true, and ``int`` refuses 4,300 digits)."""
    return segment.isascii() and segment.isdigit() and len(segment) <= 18


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 topic-filter matching with ``+`` and ``#`` wildcards."""
    filter_parts = topic_filter.split("/")
    topic_parts = topic.split("/")
    for i, part in enumerate(filter_parts):
        if part == "#":
            return True
        if i >= len(topic_parts):
            return False
        if part != "+" and part != topic_parts[i]:
            return False
    return len(filter_parts) == len(topic_parts)
