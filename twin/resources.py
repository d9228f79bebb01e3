"""What a run's world will cost before it is built: memory, model size on the wire, time to step it.

:func:`check_resources` refuses (:class:`~twin.errors.ConfigError`, exit 2) a config whose world would
not fit in memory, whose model could not travel on the bus, or which would take days to step, with one
line naming the keys responsible and the limit. The estimate reads the config's dotted keys
(``devices.count``, ``area.grid_m``, ``fl.hidden`` …) and skips what a config does not have, so a
user-written use case with other sections is checked on what it shares with the built-in ones.

The figures are deliberately generous upper bounds of what :mod:`usecases` allocates: training and
test data generated in float64 and kept as float32 (:mod:`usecases.home_health_data`); the (devices ×
cells) link matrices of :func:`twin.radio.compute_links`, and the same for every grid cell of the
coverage map (:meth:`twin.links.LinkModel.coverage_grid`); the MLP (:mod:`twin.learning.models`) once
per selected client; Python objects per agent; KPI and telemetry rows per round.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.config import flatten
from twin.errors import ConfigError

MEMORY_SHARE = 0.5
"""Share of the machine's memory a run's world may take."""

WALL_LIMIT_S = 7 * 24 * 3600.0
"""A run estimated to take longer than this to step is refused (``--until`` shortens it)."""

DEFAULT_FEATURES = 64
"""Model input width assumed when a config has no ``task.features`` (the built-in tasks are ≤ 64)."""
DEFAULT_CLASSES = 8
"""Model output width assumed when a config has no ``task.classes`` (the built-in tasks have ≤ 5)."""

BYTES_PER_SAMPLE_FEATURE = 12  # generated as float64, kept as float32
BYTES_PER_LABEL = 8  # int64
BYTES_PER_LINK_PAIR = 160  # ~20 float64 (device, cell) arrays alive at once in compute_links
BYTES_PER_GRID_CELL = 64  # the coverage map's own per-cell arrays
BYTES_PER_DEVICE = 32 * 1024  # Mesa agent, device host entry, energy ledger, telemetry
BYTES_PER_BASE_STATION = 64 * 1024
BYTES_PER_ROUND = 4096  # KPI row, events
BYTES_PER_DEVICE_ROUND = 256  # plan, selection and telemetry records per device and round
MODEL_COPIES = 8  # global model, template, host's copy, optimiser and strategy state, wire buffers
STREAM_WINDOWS = 64  # sensor windows per device for the inference services
WIRE_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0}
ENVELOPE_BYTES = 2048  # safetensors header and metadata (signature included) of a model message
ENVELOPE_BYTES_PER_TENSOR = 160
MLP_TENSORS = 6  # three linear layers, weight and bias each
STEP_S = 2e-3  # wall-clock of one simulated second with nothing to do (bus pump, mobility)
STEP_S_PER_AGENT = 5e-6
TRAINING_FLOPS_PER_S = 2e9  # small-batch MLP training on one CPU core, conservatively


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One part of the world's memory: what it is, the keys that size it, how many, how many bytes."""

    what: str
    keys: str
    count: float
    unit: str
    bytes: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a run is expected to cost."""

    memory: tuple[MemoryItem, ...]
    model_params: int | None
    model_payload_bytes: float | None
    steps: float | None
    step_keys: str
    training_flops: float
    wall_s: float

    @property
    def memory_bytes(self) -> float:
        """The world's memory, all parts together."""
        return sum(item.bytes for item in self.memory)


def physical_memory_bytes() -> int | None:
    """Memory this process may use: the machine's RAM, or a smaller cgroup limit; None if unknown."""
    found: int | None = None
    try:
        found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    found = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            found = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and (found is None or int(limit) < found):
            found = int(limit)
    except OSError:
        pass
    return found if found and found > 0 else None


def human_bytes(n: float) -> str:
    """``n`` bytes as ``1.5 GB`` (decimal units, like the numbers people compare it to)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover - the loop always returns


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400.0), ("days", 86400.0), ("hours", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _num(flat: dict[str, Any], key: str) -> float | None:
    value = flat.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def mlp_params(features: float, hidden: float, classes: float) -> float:
    """Parameters of :class:`twin.learning.models.MLP`: three linear layers with biases."""
    return features * hidden + hidden + hidden * hidden + hidden + hidden * classes + classes


def estimate(config: Any, *, until_s: float | None = None) -> Estimate:
    """Estimate the memory, model size and stepping time of a run of ``config`` (a built config)."""
    flat = flatten(config)
    devices = _num(flat, "devices.count") or 0.0
    base_stations = _num(flat, "area.base_stations") or 0.0
    features = _num(flat, "task.features") or DEFAULT_FEATURES
    classes = _num(flat, "task.classes") or DEFAULT_CLASSES
    memory: list[MemoryItem] = []

    samples_max = _num(flat, "devices.samples_max")
    if devices and samples_max:
        samples = devices * samples_max
        memory.append(
            MemoryItem(
                f"training data, {features:.0f} features a sample",
                "devices.count × devices.samples_max",
                samples,
                "samples",
                samples * (features * BYTES_PER_SAMPLE_FEATURE + BYTES_PER_LABEL),
            )
        )
    test = _num(flat, "devices.test_samples")
    test_keys = "devices.test_samples"
    households, per_household = (
        _num(flat, "devices.test_households"),
        _num(flat, "devices.test_samples_per_household"),
    )
    if households and per_household:
        test, test_keys = (
            households * per_household,
            "devices.test_households × devices.test_samples_per_household",
        )
    if test:
        memory.append(
            MemoryItem(
                "held-out test data",
                test_keys,
                test,
                "samples",
                test * (features * BYTES_PER_SAMPLE_FEATURE + 8),
            )
        )
    if devices:
        memory.append(
            MemoryItem(
                "sensor streams",
                "devices.count",
                devices * STREAM_WINDOWS,
                "windows",
                devices * STREAM_WINDOWS * features * BYTES_PER_SAMPLE_FEATURE,
            )
        )
        memory.append(
            MemoryItem(
                "agents",
                "devices.count + area.base_stations",
                devices + base_stations,
                "agents",
                devices * BYTES_PER_DEVICE + base_stations * BYTES_PER_BASE_STATION,
            )
        )
    if devices and base_stations:
        pairs = devices * base_stations
        memory.append(
            MemoryItem(
                "device links",
                "devices.count × area.base_stations",
                pairs,
                "device-cell pairs",
                pairs * BYTES_PER_LINK_PAIR,
            )
        )
    width, height, grid = _num(flat, "area.width_m"), _num(flat, "area.height_m"), _num(flat, "area.grid_m")
    if width and height and grid:
        cells = math.ceil(width / grid) * math.ceil(height / grid)
        memory.append(
            MemoryItem(
                "coverage map",
                "area.width_m × area.height_m / area.grid_m² × area.base_stations",
                cells * max(base_stations, 1.0),
                "grid cell-base station pairs",
                cells * (max(base_stations, 1.0) * BYTES_PER_LINK_PAIR + BYTES_PER_GRID_CELL),
            )
        )

    hidden = _num(flat, "fl.hidden")
    params = mlp_params(features, hidden, classes) if hidden else None
    payload = None
    if params is not None:
        selected = max(1.0, math.ceil(devices * (_num(flat, "fl.clients_per_round") or 1.0)))
        memory.append(
            MemoryItem(
                f"a {params:.3g}-parameter model per device selected a round",
                "(fl.hidden, task.features) × fl.clients_per_round × devices.count",
                params * (MODEL_COPIES + selected),
                "parameters",
                params * 4.0 * (MODEL_COPIES + selected),
            )
        )
        wire = WIRE_BYTES.get(str(flat.get("fl.wire_dtype", "fp32")), 4.0)
        tensors = MLP_TENSORS * (2 if wire == 1.0 else 1)
        payload = params * wire + ENVELOPE_BYTES + tensors * ENVELOPE_BYTES_PER_TENSOR

    rounds = _num(flat, "fl.rounds")
    if rounds:
        memory.append(
            MemoryItem(
                "round records",
                "fl.rounds × devices.count",
                rounds * max(devices, 1.0),
                "device-rounds",
                rounds * (BYTES_PER_ROUND + devices * BYTES_PER_DEVICE_ROUND),
            )
        )

    steps: float | None = None
    step_keys = ""
    training_flops = 0.0
    if rounds:
        interval = max(_num(flat, "fl.round_interval_s") or 0.0, _num(flat, "fl.deadline_s") or 0.0, 1.0)
        steps, step_keys = rounds * interval + 1.0, "fl.rounds × fl.round_interval_s"
        if until_s is not None and until_s < steps:
            steps, step_keys = until_s, "--until"
        if params is not None and devices:
            share = _num(flat, "fl.clients_per_round") or 1.0
            mean_samples = ((_num(flat, "devices.samples_min") or 0.0) + (samples_max or 0.0)) / 2
            epochs = _num(flat, "fl.local_epochs") or 1.0
            done_rounds = min(rounds, steps / interval)
            training_flops = done_rounds * devices * share * mean_samples * epochs * 6.0 * params
    agents = devices + base_stations
    wall_s = (steps or 0.0) * (STEP_S + agents * STEP_S_PER_AGENT) + training_flops / TRAINING_FLOPS_PER_S
    return Estimate(
        tuple(memory), int(params) if params else None, payload, steps, step_keys, training_flops, wall_s
    )


def check_resources(
    config: Any, *, until_s: float | None = None, memory_bytes: int | None = None
) -> Estimate:
    """Refuse a run that could not work on this machine; return its :class:`Estimate` otherwise.

    Args:
        config: the scenario's built (validated) config.
        until_s: ``--until``, which bounds the stepping time.
        memory_bytes: the machine's memory (default: :func:`physical_memory_bytes`).

    Raises:
        ConfigError: the world needs more than :data:`MEMORY_SHARE` of the memory; the model does not fit
            in ``bus.max_payload_bytes``; or stepping it would take longer than :data:`WALL_LIMIT_S`. The
            message names the keys and the limit.
    """
    found = estimate(config, until_s=until_s)
    ram = memory_bytes if memory_bytes is not None else physical_memory_bytes()
    if ram is not None and found.memory:
        limit = ram * MEMORY_SHARE
        largest = max(found.memory, key=lambda item: item.bytes)
        if found.memory_bytes > limit:
            total = "" if largest.bytes > limit else f" (the whole world ~{human_bytes(found.memory_bytes)})"
            raise ConfigError(
                f"{largest.keys} = {largest.count:.3g} {largest.unit} ({largest.what}) needs "
                f"~{human_bytes(largest.bytes)}{total}; this machine has {human_bytes(ram)} "
                f"(limit: {MEMORY_SHARE:.0%} of RAM)"
            )
    flat = flatten(config)
    max_payload = _num(flat, "bus.max_payload_bytes")
    if (
        found.model_payload_bytes is not None
        and max_payload is not None
        and max_payload < found.model_payload_bytes
    ):
        raise ConfigError(
            f"bus.max_payload_bytes = {max_payload:.0f} cannot hold the federated model "
            f"({found.model_params} parameters as {flat.get('fl.wire_dtype', 'fp32')}, "
            f"~{human_bytes(found.model_payload_bytes)}); "
            f"set it to at least {math.ceil(found.model_payload_bytes)}"
        )
    if found.wall_s > WALL_LIMIT_S:
        what = (
            f"{found.step_keys} = {found.steps:.3g} simulated seconds"
            if found.training_flops / TRAINING_FLOPS_PER_S < found.wall_s / 2
            else "fl.rounds × devices.count × devices.samples_max × fl.local_epochs × model size"
            f" = {found.training_flops:.3g} training FLOPs"
        )
        raise ConfigError(
            f"{what} would take ~{_duration(found.wall_s)} to run "
            f"(limit: {_duration(WALL_LIMIT_S)}; shorten it with --until or fewer rounds)"
        )
    return found
