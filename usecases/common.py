"""Building blocks every agent scenario shares: the model, base stations, federated training, alerts."""

from __future__ import annotations

from typing import Any

from agents.base_station import BaseStation
from agents.host import DeviceHost
from agents.inference import SensorStream, TwoStageInference
from agents.network import NetworkAgent
from twin.errors import ConfigError
from twin.learning.aggregation import make_strategy
from twin.learning.models import MLP, inference_flops_per_sample, init_params, training_flops_per_sample
from twin.learning.round_plan import ModelSpec
from twin.learning.task import TaskData
from twin.model import TwinModel
from twin.workers import PartContext, PartHost, WorkerPart
from usecases.layout import grid_base_stations
from usecases.registry import BuildContext

LOCAL_HOST_ID = "host-0"


def new_model(scenario: str, config: Any, ctx: BuildContext) -> TwinModel:
    """A :class:`TwinModel` from the config sections every agent scenario has."""
    model = TwinModel(
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
    model.hosting = ctx.hosting
    return model


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


def external_devices(model: TwinModel, config: Any) -> tuple[str, ...]:
    """Device ids reserved for clients outside the run (``--set devices.external=id,…``), checked."""
    external = tuple(getattr(config.devices, "external", ()))
    unknown = [a for a in external if not model.has_device(a)]
    if unknown:
        raise ConfigError(f"--set devices.external: no device {unknown[0]!r} in this world")
    return external


def local_host(model: TwinModel, config: Any) -> DeviceHost:
    """The device host that holds every non-external device's side, created once.

    It lives in the run's process and receives its messages there — unless the run places devices on
    worker processes (``--workers``), in which case it only gathers the devices' data and models for
    the workers (it subscribes to nothing) and :mod:`twin.workers` splits it among them.
    """
    existing = model.local_device_host
    if isinstance(existing, DeviceHost):
        return existing
    detached = model.hosting != "local"
    host = DeviceHost(
        host_id=LOCAL_HOST_ID,
        bus=model.bus,
        topics=model.topics,
        seed=model.seed,
        chunk_bytes=config.bus.chunk_bytes,
        max_payload_bytes=config.bus.max_payload_bytes,
        credentials=model.keys.credentials(),
        wire_dtype=config.fl.wire_dtype,
        subscribe=_ignore if detached else model.subscribe,
        pack_updates=config.bus.pack_updates,
    )
    if not detached:
        model.add_host(host)
    model.local_device_host = host
    return host


def add_device_side(model: TwinModel, part: WorkerPart, *, host_id: str) -> PartHost | None:
    """A scenario's own device side (beside :func:`local_host`): built here, or left to ``--workers``.

    In the run's process it becomes one host, ``host_id``, subscribed on the run's client and handed
    its messages by the model's ``pump`` (returned). With ``--workers`` nothing is built here: the part
    goes to ``model.worker_parts``, and :mod:`twin.workers` splits it with the devices (returns None).
    """
    if model.hosting != "local":
        model.worker_parts.append(part)
        return None
    credentials = model.keys.credentials()
    host = part.build(
        PartContext(host_id, model.bus, model.topics, model.seed, credentials, model.local_device_host)
    )
    for topic_filter in host.subscriptions():
        model.subscribe(topic_filter)
    model.add_host(host)
    return host


def _ignore(topic_filter: str) -> None:
    """Subscription of a host whose devices will live elsewhere: nothing to receive here."""


def add_federated_training(model: TwinModel, config: Any, *, service: str, task: TaskData) -> NetworkAgent:
    """The network agent running federated training of an MLP on ``task`` (starts at t = 1 s).

    The devices' side runs in the run's own device host (every device but the external ones), which
    reads the plan and global model of each round from the wire, trains and uploads.
    """
    net = MLP(task.in_features, config.fl.hidden, task.n_classes)
    initial = init_params(net, model.seeds.torch("model/init"))
    network = NetworkAgent(
        model,
        service=service,
        net=net,
        initial=initial,
        task=task,
        strategy=make_strategy(config.fl.strategy, config.fl.proximal_mu),
        fl=config.fl,
        bus_cfg=config.bus,
        train_flops_per_sample=training_flops_per_sample(net, task.in_features),
        targets=config.qoais,
        model_spec=ModelSpec("mlp", task.in_features, config.fl.hidden, task.n_classes),
    )
    model.network = network
    model.subscribe_service(service)
    external = set(external_devices(model, config))
    local_host(model, config).join_federated(
        service,
        net=MLP(task.in_features, config.fl.hidden, task.n_classes),
        template=initial,
        data={a: d for a, d in task.local.items() if a not in external and model.has_device(a)},
    )
    network.start(at_s=1.0)
    return network


def add_two_stage_inference(
    model: TwinModel, config: Any, *, service: str, network: NetworkAgent, streams: dict[str, SensorStream]
) -> TwoStageInference:
    """Preliminary inference on the devices with escalation to the network (first tick mid-interval)."""
    task = network.task
    external = set(external_devices(model, config))
    host = local_host(model, config)
    windows = {a: s.x for a, s in streams.items() if a not in external}
    host.join_inference(
        service,
        model_service=network.service,
        windows=windows,
        confidence_threshold=config.inference.confidence_threshold,
        escalate_anomalies=config.inference.escalate_anomalies,
    )
    alerts = TwoStageInference(
        model,
        service=service,
        network=network,
        streams={a: s for a, s in streams.items() if a in windows},
        config=config.inference,
        flops_per_inference=inference_flops_per_sample(network.net, task.in_features),
        window_bits=task.raw_sample_bits,
        targets=config.inference_qoais,
        members={host.host_id: set(windows)} if service in host.inference else {},
    )
    alerts.start(at_s=config.inference.interval_s / 2)
    return alerts
