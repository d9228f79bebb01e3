"""Building blocks every agent scenario shares: the model, base stations, federated training, alerts."""

from __future__ import annotations

from typing import Any

from agents.base_station import BaseStation
from agents.inference import SensorStream, TwoStageInference
from agents.network import NetworkAgent
from twin.learning.aggregation import make_strategy
from twin.learning.models import MLP, inference_flops_per_sample, init_params, training_flops_per_sample
from twin.learning.task import TaskData
from twin.model import TwinModel
from usecases.layout import grid_base_stations
from usecases.registry import BuildContext


def new_model(scenario: str, config: Any, ctx: BuildContext) -> TwinModel:
    """A :class:`TwinModel` from the config sections every agent scenario has."""
    return TwinModel(
        scenario=scenario,
        run_id=ctx.run_id,
        seed=ctx.seed,
        bus=ctx.bus,
        area=config.area,
        radio=config.radio,
        link=config.link,
        bus_cfg=config.bus,
        carbon=config.carbon,
        edge=config.edge_compute,
        wire_dtype=config.fl.wire_dtype,
        rounds_limit=ctx.rounds_limit,
    )


def add_base_stations(model: TwinModel, config: Any) -> None:
    """Base stations on a grid over the area, each with an edge server."""
    for i, xy in enumerate(grid_base_stations(config.area)):
        model.base_stations.append(
            BaseStation(
                model,
                model.space,
                agent_id=f"gnb-{i:02d}",
                position_m=xy,
                height_m=config.area.bs_height_m,
                edge=config.edge_compute,
            )
        )


def add_federated_training(model: TwinModel, config: Any, *, service: str, task: TaskData) -> NetworkAgent:
    """The network agent running federated training of an MLP on ``task`` (starts at t = 1 s)."""
    net = MLP(task.in_features, config.fl.hidden, task.n_classes)
    network = NetworkAgent(
        model,
        service=service,
        net=net,
        initial=init_params(net, model.seeds.torch("model/init")),
        task=task,
        strategy=make_strategy(config.fl.strategy, config.fl.proximal_mu),
        fl=config.fl,
        bus_cfg=config.bus,
        train_flops_per_sample=training_flops_per_sample(net, task.in_features),
        targets=config.qoais,
    )
    model.network = network
    model.subscribe_service(service)
    network.start(at_s=1.0)
    return network


def add_two_stage_inference(
    model: TwinModel, config: Any, *, service: str, network: NetworkAgent, streams: dict[str, SensorStream]
) -> TwoStageInference:
    """Preliminary inference on the devices with escalation to the network (first tick mid-interval)."""
    task = network.task
    alerts = TwoStageInference(
        model,
        service=service,
        network=network,
        streams=streams,
        config=config.inference,
        flops_per_inference=inference_flops_per_sample(network.net, task.in_features),
        window_bits=task.raw_sample_bits,
        targets=config.inference_qoais,
    )
    alerts.start(at_s=config.inference.interval_s / 2)
    return alerts
