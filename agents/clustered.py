"""Clustered aggregation (paper §2.3.2: the network "aggregates by class"): one global model per cluster.

Robots of one production step train the same model; the network keeps **one federated service per
cluster** (``defects-step-1``, ``defects-step-2``, …), each a :class:`ClusterNetworkAgent` with its own
members, rounds, topics, model registry, KPI rows (tagged with the service) and QoAIS report. An update
is only ever aggregated by the agent of its own service, and that agent only accepts updates of devices
it selected from its own members, so updates never mix across clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.device import Device
from agents.network import NetworkAgent
from twin.learning.aggregation import Params
from twin.qoais import ServiceReport
from twin.service_reports import federated_training_report
from twin.settings import QoAISTargets

if TYPE_CHECKING:
    from twin.model import TwinModel


class ClusterNetworkAgent(NetworkAgent):
    """The network agent of one cluster: selects only among its members, keeps every model version."""

    def __init__(self, model: TwinModel, *, members: Sequence[str], **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.members = tuple(sorted(members))
        self.kpi_labels = {"service": self.service}
        self.versions: dict[int, Params] = {0: dict(self.global_params)}
        """Global model after each round (0: the initial one): what a device holding version v runs."""
        self.finished = False

    def candidates(self) -> list[Device]:
        """The cluster's members, in id order."""
        return [self.model.device(a) for a in self.members]

    def end_round(self) -> None:
        """Aggregate this cluster's round, then keep the new global model as a version."""
        super().end_round()
        self.versions[self.rounds_done] = dict(self.global_params)

    def on_rounds_limit(self) -> None:
        """This cluster is done; the run ends once every cluster is."""
        self.finished = True
        peers = [n for n in self.model.networks.values() if isinstance(n, ClusterNetworkAgent)]
        if all(n.finished for n in peers):
            self.model.running = False


class ClusterTrainingService:
    """A cluster's federated training as a service of the run: its KPI rows, summary and QoAIS report."""

    def __init__(self, model: TwinModel, network: ClusterNetworkAgent, targets: QoAISTargets) -> None:
        self.model = model
        self.network = network
        self.service = network.service
        self.targets = targets
        self.records: list[dict[str, Any]] = []  # no per-request records: rounds are KPI rows

    def rows(self) -> list[dict[str, Any]]:
        """This cluster's KPI rows, in round order."""
        return [r for r in self.model.kpi_rows if r.get("service") == self.service]

    def summary(self) -> dict[str, float]:
        """Rounds done and the last round's accuracy and energy."""
        rows = self.rows()
        if not rows:
            return {}
        last = rows[-1]
        return {
            "rounds": float(len(rows)),
            "members": float(len(self.network.members)),
            "accuracy": float(last["accuracy"]),
            "service_accuracy": float(last["service_accuracy"]),
            "energy_round_j": float(last["energy_round_j"]),
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of this cluster's federated training over its own rounds only."""
        return federated_training_report(
            self.service,
            self.rows(),
            self.targets,
            tls=tls,
            authenticated=authenticated,
            baseline_accuracy=self.network.task.majority_baseline(),
        )
