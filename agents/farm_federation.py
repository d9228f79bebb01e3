"""Federated training of a remote site's devices over the bus (network side), e.g. a second herder's farm.

:class:`agents.network.NetworkAgent` trains the devices of the twin's world: their places, links and
compute profiles decide each round's timeline. A :class:`FarmFederation` trains devices that are **not**
in that world — another farm, in another region, that reaches the network over one fixed link (a
satellite beam shared by its devices) — with the same protocol and the same trust rules:

each round it publishes a signed round plan (``…/ml/{service}/{round}/select``, every device of the
farm selected) and the global model (retained); the device host that holds the farm's devices
(:class:`agents.host.DeviceHost`) decodes both **from the wire**, trains them as one cohort and
publishes each device's update, authenticated by that device (alone, or packed with the host's
other devices' — the model hands them over one per device); the network waits for every expected
update (asking again after ``bus.resend_after_s``), aggregates them **sorted by sender id** weighted
by the devices' registered sample counts (FedAvg), evaluates on the farm's held-out data and starts
the next round — until the accuracy target (after ``min_rounds``) or ``max_rounds``. It never trains.

A round lasts ``round_s`` simulated seconds, the modelled time of one round over the farm's link
(download, local training, upload, round trip), so rounds follow each other on the simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from agents.network import publish_round_and_wait
from broker.model_exchange import ReceivedModel, ResendRequest
from twin.learning.aggregation import ClientUpdate, Params, weighted_average
from twin.learning.cohort import evaluate
from twin.learning.round_plan import ModelSpec, RoundPlan

if TYPE_CHECKING:
    from twin.model import TwinModel


@dataclass(frozen=True, slots=True)
class LocalTraining:
    """How the farm's devices train each round (what the round plan tells them)."""

    local_epochs: int
    batch_size: int
    lr: float
    proximal_mu: float = 0.0


@dataclass(frozen=True, slots=True)
class FarmRound:
    """One finished round: when, how many updates were aggregated, the new global model's accuracy."""

    index: int
    start_s: float
    end_s: float
    updates: int
    accuracy: float
    global_bytes: int
    """Size of the round's global model as it was published (encoded, wire dtype)."""


class FarmFederation:
    """The network side of one federated service whose devices belong to a remote farm."""

    agent_id = "network"

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        net: nn.Module,
        template: Params,
        devices: Mapping[str, int],
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        training: LocalTraining,
        model_spec: ModelSpec,
        round_s: float,
        target_accuracy: float,
        max_rounds: int,
        min_rounds: int = 1,
        on_done: Callable[[FarmFederation], None] | None = None,
    ) -> None:
        """Register the service with the model (its updates are handed to :meth:`on_model`).

        Args:
            model: the twin (its bus, exchange, keys and clock).
            service: the federated service (a topic segment).
            net: the architecture, to evaluate global models.
            template: tensors of the architecture (names and shapes every update must have).
            devices: the farm's device ids and their registered sample counts (aggregation weights).
            test_x: the farm's held-out inputs.
            test_y: the farm's held-out labels.
            training: local training of each round.
            model_spec: the architecture as the round plan names it.
            round_s: simulated seconds one round takes over the farm's link (> 0).
            target_accuracy: training stops once the global model reaches it (after ``min_rounds``).
            max_rounds: most rounds.
            min_rounds: fewest rounds.
            on_done: told when training has stopped.
        """
        if round_s <= 0 or not devices or max_rounds < 1:
            raise ValueError("a farm federation needs devices, max_rounds >= 1 and round_s > 0")
        self.model = model
        self.service = service
        self.net = net
        self.devices = dict(sorted(devices.items()))
        self.test_x, self.test_y = test_x, test_y
        self.training = training
        self.model_spec = model_spec
        self.round_s = float(round_s)
        self.target_accuracy = target_accuracy
        self.max_rounds = max_rounds
        self.min_rounds = min_rounds
        self.on_done = on_done
        self.global_params: Params = {k: v.detach().clone() for k, v in template.items()}
        self.started_s: float | None = None
        self.finished_s: float | None = None
        self.rounds: list[FarmRound] = []
        self.updates_accepted = 0
        """Updates taken from the bus (authenticated, expected, of the round in progress)."""
        self._index = 0
        self._round_start_s = 0.0
        self._updates: dict[str, Params] = {}
        self._global_bytes = 0
        model.exchange.register_template(service, self.global_params)
        model.networks[service] = self
        model.subscribe_service(service)

    # ---- life cycle ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether :meth:`begin` was called."""
        return self.started_s is not None

    @property
    def done(self) -> bool:
        """Whether training has stopped."""
        return self.finished_s is not None

    @property
    def rounds_done(self) -> int:
        """Rounds finished so far."""
        return len(self.rounds)

    @property
    def accuracy(self) -> float:
        """Held-out accuracy of the current global model (NaN before the first round)."""
        return self.rounds[-1].accuracy if self.rounds else float("nan")

    def begin(self, start: Params, *, at_s: float) -> None:
        """Train from ``start`` (what the devices receive as round 1's global model) from ``at_s`` on."""
        if self.started:
            raise RuntimeError(f"{self.service} has already begun")
        self.global_params = {k: v.detach().clone() for k, v in start.items()}
        self.started_s = float(at_s)
        self.model.schedule_event(self.start_round, at=at_s)

    def start_round(self) -> None:
        """Publish the plan and the global model; wait for every device's update; end the round later."""
        model = self.model
        self._index += 1
        index = self._index
        self._round_start_s = float(model.time)
        self._updates = {}
        expected = list(self.devices)
        plan = RoundPlan(
            run_id=model.run_id,
            service=self.service,
            round_index=index,
            sim_time_s=float(model.time),
            deadline_s=self.round_s,
            selected=tuple(expected),
            local_epochs=self.training.local_epochs,
            batch_size=self.training.batch_size,
            lr=self.training.lr,
            proximal_mu=self.training.proximal_mu,
            model=self.model_spec,
        )
        self._global_bytes = publish_round_and_wait(
            model,
            plan,
            self.global_params,
            expected,
            self._updates,
            what=f"updates of round {index} of {self.service}",
        )
        model.schedule_event(self.end_round, at=self._round_start_s + self.round_s)

    def on_model(self, received: ReceivedModel) -> None:
        """Take one device's update of the round in progress (authenticated and checked by the exchange)."""
        stats = self.model.bus.stats
        if received.kind != "update":
            stats.reject("unexpected")
            return
        if self.done or received.round_index != self._index or self.finished_round(received.round_index):
            stats.reject("late")
            return
        agent_id = received.agent_id
        if agent_id is None or agent_id not in self.devices or agent_id in self._updates:
            stats.reject("unexpected")
            return
        self._updates[agent_id] = dict(received.payload.tensors)
        self.updates_accepted += 1
        self.model.accepted += 1

    def finished_round(self, index: int) -> bool:
        """Whether round ``index`` has been aggregated already."""
        return index <= self.rounds_done

    def on_resend_request(self, request: ResendRequest) -> None:
        """A device host asks for (chunks of) a global model again."""
        topic = self.model.topics.global_model(self.service, request.round_index)
        if not self.model.exchange.resend(topic, request.chunks):
            self.model.bus.stats.reject("unknown")

    def end_round(self) -> None:
        """Aggregate the round's updates in sender-id order, evaluate, go on or stop."""
        model = self.model
        index = self._index
        updates = [ClientUpdate(a, self.devices[a], self._updates[a]) for a in sorted(self._updates)]
        self.global_params = weighted_average(updates)
        accuracy, _ = evaluate(self.net, self.global_params, self.test_x, self.test_y)
        now = float(model.time)
        self.rounds.append(
            FarmRound(index, self._round_start_s, now, len(updates), float(accuracy), self._global_bytes)
        )
        self._updates = {}
        model.exchange.forget_sent(index, service=self.service)
        model.exchange.forget_received(index + 1, service=self.service)
        enough = index >= self.min_rounds and accuracy >= self.target_accuracy
        if enough or index >= self.max_rounds:
            self.finished_s = now
            if self.on_done is not None:
                self.on_done(self)
            return
        model.schedule_event(self.start_round, at=now)

    def sent_bytes(self, round_index: int) -> int:
        """Size of round ``round_index``'s global model as it was published (encoded, wire dtype)."""
        return next(r.global_bytes for r in self.rounds if r.index == round_index)


__all__ = ["FarmFederation", "FarmRound", "LocalTraining"]
