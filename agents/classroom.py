"""Virtual classroom (paper §2.3.7): VR/AR student terminals, their host, and the virtual teacher at the edge.

Every ``interval_s`` the virtual teacher (network side) publishes a signed tick. The **classroom host**
(device side, an MQTT endpoint like :class:`agents.host.DeviceHost`) then, for each terminal it holds:

1. senses the learner's window and infers the engagement state with the model the terminal holds
   (the federated global model it last downloaded), in fixed blocks, batched per model version;
2. updates the learner's **profile locally** (an exponential average of the inferred state
   probabilities and a count of windows): the profile never leaves the terminal;
3. draws the jobs it offloads during the interval: scene **rendering** bursts (Poisson) and, more often
   the further the profile drifts from ``engaged``, an **adaptive exercise** (assessment) job;

and publishes one message: each learner's inferred state (a result: no window leaves) and the jobs.
The teacher records each state against the learner's true state, decides per classroom whether to
intervene (slow the pace, re-explain) and hands the jobs to the compute service
(:class:`agents.edge_compute.EdgeComputeService`).

The terminals' side is described by a :class:`ClassroomPart` (their windows, the model's architecture,
the offload settings) and built where the terminals run: as one host in the run's process, or split
among the device-host workers of ``--workers`` (:mod:`twin.workers`), each worker's part reading the
models its own device host received. Every terminal's inference, profile and jobs depend only on that
terminal, and the teacher sorts what it receives by learner, so the split changes no result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from mesa.experimental.continuous_space import ContinuousSpace
from torch import nn

from agents.device import Device
from agents.edge_compute import EdgeComputeService, OffloadedJob
from agents.host import TICK_SCHEMA
from agents.host_batches import accept_host_batch
from broker.bus import Bus, Message
from broker.json_codec import decode_json, encode_json
from broker.topics import Topics
from twin.auth import Credentials, json_digest, sign_document
from twin.config import check_positive, check_range
from twin.errors import PayloadError
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData, Params, batch_invariant_logits
from twin.qoais import Indicator, ServiceReport, graded_indicators
from twin.rng import SeedStreams
from twin.settings import InferenceTargets

if TYPE_CHECKING:
    from twin.model import TwinModel
    from twin.workers import PartContext

REQUEST_SCHEMA = "twin.classroom.request.v1"
RESPONSE_SCHEMA = "twin.classroom.response.v1"
MAX_BATCH_BYTES = 16 << 20
MAX_JOBS_PER_TERMINAL = 1000


class StudentTerminal(Device):
    """A VR/AR headset at a seat of a classroom: senses its learner, trains locally, offloads rendering."""

    kind: ClassVar[str] = "vr-headset"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        compute: ComputeProfile,
        data: LocalData,
        classroom: int,
    ) -> None:
        super().__init__(
            model, space, agent_id=agent_id, position_m=position_m, height_m=1.2, compute=compute, data=data
        )
        self.classroom = classroom


@dataclass(frozen=True, slots=True)
class OffloadConfig:
    """What terminals offload to the edge and the end-to-end latency each kind must meet."""

    interval_s: float = 1.0
    """Simulated time between two classroom ticks (sensing, profile update, offloading)."""
    render_jobs_per_s: float = 6.0
    """Rendering bursts a terminal offloads per second (Poisson)."""
    render_gflop: float = 8.0
    """Mean size of one rendering burst (lognormal, σ 0.4)."""
    render_input_bits: float = 16e3
    """Pose, controller and gaze data sent with a rendering burst."""
    render_output_bits: float = 150e3
    """Encoded frame tiles the burst returns."""
    render_latency_s: float = 0.05
    """End-to-end target of a rendering burst (split rendering with late-stage reprojection)."""
    assessment_base_prob: float = 0.05
    """Chance per tick that an engaged learner gets an adaptive exercise."""
    assessment_gain: float = 0.5
    """Extra chance per tick per unit of the learner's profile away from ``engaged``."""
    assessment_gflop: float = 40.0
    """Size of generating and scoring one adaptive exercise."""
    assessment_input_bits: float = 40e3
    """Answers and interaction log sent with an exercise."""
    assessment_output_bits: float = 400e3
    """The exercise's scene returned."""
    assessment_latency_s: float = 0.5
    """End-to-end target of an adaptive exercise (timely feedback, §2.3.7.4 (4))."""
    profile_smoothing: float = 0.2
    """Weight of a new window in the learner profile's running average, in (0, 1]."""
    result_bits: int = 256
    """Size of one learner's engagement result sent to the teacher."""
    intervene_share: float = 0.4
    """Share of a classroom's learners not engaged above which the teacher intervenes."""

    def __post_init__(self) -> None:
        check_positive(
            "offload",
            interval_s=self.interval_s,
            render_gflop=self.render_gflop,
            render_input_bits=self.render_input_bits,
            render_output_bits=self.render_output_bits,
            render_latency_s=self.render_latency_s,
            assessment_gflop=self.assessment_gflop,
            assessment_input_bits=self.assessment_input_bits,
            assessment_output_bits=self.assessment_output_bits,
            assessment_latency_s=self.assessment_latency_s,
            result_bits=self.result_bits,
        )
        check_range("offload", "render_jobs_per_s", self.render_jobs_per_s, 0.0, 1000.0)
        check_range("offload", "assessment_base_prob", self.assessment_base_prob, 0.0, 1.0)
        check_range("offload", "assessment_gain", self.assessment_gain, 0.0, 1.0)
        check_range("offload", "profile_smoothing", self.profile_smoothing, 1e-6, 1.0)
        check_range("offload", "intervene_share", self.intervene_share, 0.0, 1.0)


@dataclass(slots=True)
class LearnerProfile:
    """What a terminal keeps about its learner (never sent): running state mix and windows seen."""

    state_mix: np.ndarray
    windows: int = 0

    def update(self, probs: np.ndarray, smoothing: float) -> None:
        """Fold one window's inferred state probabilities into the running mix."""
        weight = 1.0 if self.windows == 0 else smoothing
        self.state_mix = (1.0 - weight) * self.state_mix + weight * probs
        self.windows += 1


@dataclass(slots=True)
class _Terminal:
    windows: torch.Tensor
    profile: LearnerProfile


HeldModel = Callable[[str], tuple[int, Params]]


@dataclass(slots=True)
class ClassroomHost:
    """The terminals' side of the classroom: sense, infer, update profiles, offload (see the module doc)."""

    host_id: str
    service: str
    bus: Bus
    topics: Topics
    seed: int
    credentials: Credentials
    net: nn.Module
    held_model: HeldModel
    config: OffloadConfig
    windows: dict[str, torch.Tensor]
    n_classes: int
    terminals: dict[str, _Terminal] = field(init=False)
    seeds: SeedStreams = field(init=False)
    last_tick: int = -1
    answered: int = 0

    def __post_init__(self) -> None:
        uniform = np.full(self.n_classes, 1.0 / self.n_classes)
        self.terminals = {
            a: _Terminal(w, LearnerProfile(uniform.copy())) for a, w in sorted(self.windows.items())
        }
        self.seeds = SeedStreams(self.seed)

    def subscriptions(self) -> tuple[str, ...]:
        """Topics this host listens on: the teacher's ticks and its answers to this host."""
        return (self.topics.tick(self.service), self.topics.response(self.service, self.host_id))

    def handles(self, topic: str) -> bool:
        """Whether ``topic`` is this host's tick or its answers."""
        return topic in self.subscriptions()

    def on_message(self, message: Message) -> None:
        """A tick (answered with one batch) or the teacher's answer; bad input is counted, never raised."""
        try:
            if message.topic == self.topics.tick(self.service):
                self._on_tick(message)
            else:
                doc = self._signed(message, MAX_BATCH_BYTES)
                if doc.get("schema") != RESPONSE_SCHEMA:
                    raise PayloadError("malformed", "classroom response has a wrong schema")
                self.answered += 1
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)

    def _signed(self, message: Message, max_bytes: int) -> dict[str, Any]:
        doc = decode_json(message.payload, max_bytes=max_bytes)
        if not self.credentials.verify_network(message.topic, json_digest(doc), doc.get("auth")):
            raise PayloadError("forged", f"message on {message.topic} not signed by the run's network")
        return doc

    def _on_tick(self, message: Message) -> None:
        doc = self._signed(message, 4096)
        tick, now = doc.get("tick"), doc.get("sim_time_s")
        if doc.get("schema") != TICK_SCHEMA or doc.get("run_id") != self.topics.run_id:
            raise PayloadError("malformed", "classroom tick has a wrong schema or run")
        if not isinstance(tick, int) or isinstance(tick, bool) or tick < 0 or not isinstance(now, float):
            raise PayloadError("malformed", "classroom tick without a valid index and time")
        if tick <= self.last_tick:
            raise PayloadError("duplicate", f"classroom tick {tick} already answered")
        self.last_tick = tick
        body = {
            "schema": REQUEST_SCHEMA,
            "run_id": self.topics.run_id,
            "host": self.host_id,
            "tick": tick,
            "results": self.sense_and_infer(tick),
            "jobs": self.offload(tick),
        }
        topic = self.topics.request(self.service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.credentials.sign(self.host_id, t, d))
        self.bus.publish(topic, encode_json(signed), qos=1)

    def sense_and_infer(self, tick: int) -> list[dict[str, Any]]:
        """Each learner's state this tick, inferred on its terminal; profiles updated locally."""
        groups: dict[int, list[str]] = {}
        held: dict[int, Params] = {}
        for agent_id in self.terminals:
            version, params = self.held_model(agent_id)
            groups.setdefault(version, []).append(agent_id)
            held[version] = params
        out: dict[str, dict[str, Any]] = {}
        for version, members in sorted(groups.items()):
            x = torch.stack(
                [self.terminals[a].windows[tick % len(self.terminals[a].windows)] for a in members]
            )
            probs = torch.softmax(batch_invariant_logits(self.net, held[version], x), dim=1).numpy()
            for agent_id, p in zip(members, probs, strict=True):
                self.terminals[agent_id].profile.update(p.astype(float), self.config.profile_smoothing)
                state = int(np.argmax(p))
                out[agent_id] = {"agent_id": agent_id, "state": state, "confidence": float(p[state])}
        return [out[a] for a in sorted(out)]

    def offload(self, tick: int) -> list[dict[str, Any]]:
        """The jobs each terminal offloads during this tick's interval (offsets in s from the tick)."""
        cfg = self.config
        jobs: list[dict[str, Any]] = []
        for agent_id, terminal in self.terminals.items():
            rng = self.seeds.numpy(f"classroom/jobs/{tick}/{agent_id}")
            n = min(int(rng.poisson(cfg.render_jobs_per_s * cfg.interval_s)), MAX_JOBS_PER_TERMINAL)
            offsets = np.sort(rng.uniform(0.0, cfg.interval_s, n))
            sizes = cfg.render_gflop * 1e9 * rng.lognormal(-0.08, 0.4, n)  # mean ≈ render_gflop
            jobs += [
                {"agent_id": agent_id, "kind": "render", "offset_s": float(o), "flops": float(f)}
                for o, f in zip(offsets.tolist(), sizes.tolist(), strict=True)
            ]
            drift = 1.0 - float(terminal.profile.state_mix[0])
            if rng.random() < min(1.0, cfg.assessment_base_prob + cfg.assessment_gain * drift):
                offset = float(rng.uniform(0.0, cfg.interval_s))
                jobs.append(
                    {
                        "agent_id": agent_id,
                        "kind": "assessment",
                        "offset_s": offset,
                        "flops": cfg.assessment_gflop * 1e9,
                    }
                )
        return jobs


@dataclass(frozen=True, slots=True)
class ClassroomPart:
    """The terminals' side of the classroom for some terminals, as data (:class:`twin.workers.WorkerPart`)."""

    service: str
    """The virtual teacher's service (its ticks, the batches it expects)."""
    model_service: str
    """The federated service whose global models the terminals infer with (as their device host has them)."""
    net: nn.Module
    config: OffloadConfig
    windows: dict[str, torch.Tensor]
    """Terminal → its learner's lesson windows."""
    n_classes: int

    @property
    def device_ids(self) -> Collection[str]:
        """The terminals it holds."""
        return self.windows.keys()

    def split(self, devices: Collection[str]) -> ClassroomPart | None:
        """The same side for ``devices`` only (None when none of them is a terminal of it)."""
        wanted = set(devices)
        windows = {a: w for a, w in self.windows.items() if a in wanted}
        return replace(self, windows=windows) if windows else None

    def build(self, ctx: PartContext) -> ClassroomHost:
        """The classroom host of these terminals, reading the models ``ctx.devices`` received."""
        if ctx.devices is None:
            raise ValueError("the classroom's terminals need their device host (the models they received)")
        return ClassroomHost(
            host_id=ctx.host_id,
            service=self.service,
            bus=ctx.bus,
            topics=ctx.topics,
            seed=ctx.seed,
            credentials=ctx.credentials,
            net=self.net,
            held_model=partial(ctx.devices.deployed, self.model_service),
            config=self.config,
            windows=self.windows,
            n_classes=self.n_classes,
        )


class VirtualTeacher:
    """The virtual teacher at the edge: ticks, learners' states vs truth, interventions, offloaded jobs."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        config: OffloadConfig,
        compute: EdgeComputeService,
        labels: dict[str, torch.Tensor],
        classroom_of: dict[str, int],
        inference_flops: float,
        targets: InferenceTargets,
        members: dict[str, set[str]],
    ) -> None:
        self.model = model
        self.service = service
        self.config = config
        self.compute = compute
        self.labels = labels
        self.classroom_of = classroom_of
        self.inference_flops = inference_flops
        self.targets = targets
        self.members = {h: set(a) for h, a in members.items() if a}
        self.records: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.tick_index = 0
        self._batches: dict[str, dict[str, Any]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def set_members(self, members: dict[str, set[str]]) -> None:
        """Which host holds which terminals (when the terminals move to ``--workers``)."""
        self.members = {h: set(a) for h, a in members.items() if a}

    def start(self, at_s: float) -> None:
        """Schedule the first tick."""
        if self.members:
            self.model.schedule_event(self.tick, at=at_s)

    def tick(self) -> None:
        """One interval: hosts sense, infer and offload; the teacher records, decides, runs the jobs."""
        model = self.model
        start_s = float(model.time)
        self._batches, self._waiting = {}, True
        doc = {
            "schema": TICK_SCHEMA,
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": start_s,
        }
        topic = model.topics.tick(self.service)
        model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what=f"classroom results of tick {self.tick_index}",
            progress=lambda: len(self._batches),
        )
        self._waiting = False
        batches = [self._batches[h] for h in sorted(self._batches)]
        results = sorted((r for b in batches for r in b["results"]), key=lambda r: str(r["agent_id"]))
        self._record_states(results, start_s)
        jobs = sorted(
            (j for b in batches for j in b["jobs"]),
            key=lambda j: (str(j["agent_id"]), float(j["offset_s"]), str(j["kind"])),
        )
        cfg = self.config
        offloaded = [
            OffloadedJob(
                j["agent_id"],
                j["kind"],
                start_s + float(j["offset_s"]),
                float(j["flops"]),
                cfg.render_input_bits if j["kind"] == "render" else cfg.assessment_input_bits,
                cfg.render_output_bits if j["kind"] == "render" else cfg.assessment_output_bits,
                cfg.render_latency_s if j["kind"] == "render" else cfg.assessment_latency_s,
            )
            for j in jobs
        ]
        self.compute.offer(offloaded, tick=self.tick_index, until_s=start_s + cfg.interval_s)
        for host_id in sorted(self._batches):
            topic = model.topics.response(self.service, host_id)
            answer = {
                "schema": RESPONSE_SCHEMA,
                "run_id": model.run_id,
                "host": host_id,
                "tick": self.tick_index,
                "interventions": [
                    d["classroom"] for d in self.decisions if d["tick"] == self.tick_index and d["intervene"]
                ],
            }
            model.bus.publish(topic, encode_json(sign_document(answer, topic, model.keys.sign)), qos=1)
        self.tick_index += 1
        model.schedule_event(self.tick, at=start_s + cfg.interval_s)

    def _record_states(self, results: list[dict[str, Any]], now_s: float) -> None:
        """Each learner's state vs the truth (latency: on-device inference + result uplink), decisions."""
        model, tick = self.model, self.tick_index
        devices = [model.device(r["agent_id"]) for r in results]
        truth: dict[int, list[bool]] = {}
        seen: dict[int, list[bool]] = {}
        for device, result in zip(devices, results, strict=True):
            labels = self.labels[device.agent_id]
            label = int(labels[tick % len(labels)])
            latency = self.inference_flops / device.compute.flops_per_s + (
                self.config.result_bits / device.uplink_bps if device.uplink_bps > 0 else math.inf
            )
            self.records.append(
                {
                    "tick": tick,
                    "sim_time_s": now_s,
                    "agent_id": device.agent_id,
                    "label": label,
                    "final_class": int(result["state"]),
                    "confidence": float(result["confidence"]),
                    "correct": int(result["state"]) == label,
                    "reliability": float(device.reliability),
                    "latency_s": float(latency),
                }
            )
            room = self.classroom_of[device.agent_id]
            truth.setdefault(room, []).append(label != 0)
            seen.setdefault(room, []).append(int(result["state"]) != 0)
        for room in sorted(seen):
            share, true_share = float(np.mean(seen[room])), float(np.mean(truth[room]))
            self.decisions.append(
                {
                    "tick": tick,
                    "classroom": room,
                    "not_engaged_share": share,
                    "intervene": share >= self.config.intervene_share,
                    "should_intervene": true_share >= self.config.intervene_share,
                }
            )

    def _on_message(self, message: Message) -> None:
        """Accept one well-formed, authenticated batch per expected host and tick."""
        got = accept_host_batch(self, message, schema=REQUEST_SCHEMA, max_bytes=MAX_BATCH_BYTES)
        if got is None:
            return
        host_id, doc = got
        stats = self.model.bus.stats
        if not self._valid(host_id, doc.get("results"), doc.get("jobs")):
            stats.reject("malformed")
            return
        self._batches[host_id] = doc
        self.model.accepted += 1

    def _valid(self, host_id: str, results: Any, jobs: Any) -> bool:
        """Every member's result once, states in range; jobs of members with sane sizes and offsets."""
        mine = self.members[host_id]
        if not isinstance(results, list) or not isinstance(jobs, list):
            return False
        ids = [r.get("agent_id") if isinstance(r, dict) else None for r in results]
        if sorted(map(str, ids)) != sorted(mine) or len(ids) != len(mine):
            return False
        for r in results:
            state, conf = r.get("state"), r.get("confidence")
            if not (isinstance(state, int) and not isinstance(state, bool) and 0 <= state < 1000):
                return False
            if not (isinstance(conf, float) and 0.0 <= conf <= 1.0):
                return False
        if len(jobs) > MAX_JOBS_PER_TERMINAL * len(mine):
            return False
        for j in jobs:
            if (
                not isinstance(j, dict)
                or j.get("agent_id") not in mine
                or j.get("kind") not in ("render", "assessment")
            ):
                return False
            offset, flops = j.get("offset_s"), j.get("flops")
            if not (isinstance(offset, float) and 0.0 <= offset < self.config.interval_s):
                return False
            if not (isinstance(flops, float) and 0.0 < flops < 1e15):
                return False
        return True

    def summary(self) -> dict[str, float]:
        """Engagement figures: states right, latency of the feedback, the teacher's decisions."""
        if not self.records:
            return {}
        correct = np.array([r["correct"] for r in self.records], dtype=float)
        reliability = np.array([r["reliability"] for r in self.records])
        latency = np.array([r["latency_s"] for r in self.records])
        finite = latency[np.isfinite(latency)]
        quarter = max(1, len(correct) // 4)
        agree = [d["intervene"] == d["should_intervene"] for d in self.decisions]
        return {
            "requests": float(len(self.records)),
            "accuracy": float(correct.mean()),
            "service_accuracy": float((correct * reliability).mean()),
            "service_accuracy_last_quarter": float((correct * reliability)[-quarter:].mean()),
            "latency_p95_s": float(np.percentile(finite, 95)) if len(finite) else math.inf,
            "interventions": float(sum(d["intervene"] for d in self.decisions)),
            "decision_agreement": float(np.mean(agree)) if agree else math.nan,
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the engagement feedback to the virtual teacher."""
        kind = "engagement inference (on the terminals, for the virtual teacher)"
        s = self.summary()
        if not s:
            return ServiceReport(self.service, kind, (), ("no tick served: nothing to assess",))
        t = self.targets
        indicators = (
            Indicator(
                "performance",
                "service_accuracy",
                s["service_accuracy_last_quarter"],
                t.accuracy,
                "",
                "min",
                "last quarter of the lesson (model trained longer); "
                f"whole lesson {s['service_accuracy']:.3f}",
            ),
            Indicator(
                "performance",
                "feedback_latency_p95",
                s["latency_p95_s"],
                t.latency_s,
                " s",
                "max",
                "on-terminal inference + result uplink",
            ),
            *graded_indicators(
                t,
                tls=tls,
                authenticated=authenticated,
                raw_data_leaves_device=False,
                features_leave_device=True,
                privacy_detail="only each learner's inferred state leaves the terminal; profiles stay on it",
            ),
        )
        notes = (
            f"ticks: {self.tick_index}; interventions: {int(s['interventions'])}; "
            f"decisions agreeing with the learners' true states: {s['decision_agreement']:.3f}",
        )
        return ServiceReport(self.service, kind, indicators, notes)
