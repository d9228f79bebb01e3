"""Profile a real torch model block by block for split inference (Neurosurgeon-style, paper 2.4.1 / 3.2.4.1).

A model given as an ``nn.Sequential`` is split between its children: split point ``k`` runs children
``0..k-1`` on the device, sends the activation after child ``k-1`` (the raw input for ``k = 0``) and runs
the rest in the network; the last split point runs everything on the device and sends nothing.
FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
multiply-accumulate of convolutions and matrix products and nothing for activations, pooling or biases,
the convention of the paper's 31 GFLOPs for VGG-16 (15.5 GMACs). Profiling works on the ``meta`` device,
so a model's work can be measured without its weights or real compute.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from twin.kpi import (
    ComputeProfile,
    KpiInputError,
    LinkProfile,
    SplitInferenceCost,
    SplitObjective,
    SplitPoint,
    SplitProfile,
    choose_split,
    split_inference_cost,
)

VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
"""Output channels of the 3x3 convolutions of VGG-16's five stages (configuration D), each then max-pooled."""


@dataclass(frozen=True, slots=True)
class BlockProfile:
    """Work and output of one block (a child of the profiled ``nn.Sequential``)."""

    name: str
    flops: float
    output_shape: tuple[int, ...]
    output_bits: float


def profile_blocks(
    model: nn.Module, example_input: torch.Tensor, *, bits_per_value: int = 32
) -> tuple[BlockProfile, ...]:
    """FLOPs and output size of every child of ``model``, running them in order on ``example_input``.

    Args:
        model: an ``nn.Sequential`` whose children are the blocks between which the model may be split.
        example_input: one input batch (sizes are for the whole batch); may live on the ``meta`` device.
        bits_per_value: bits of one activation value on the air (32 for float32, 16 for fp16, 8 for int8).

    Raises:
        KpiInputError: ``model`` is not a non-empty ``nn.Sequential``, or ``bits_per_value`` < 1.

    """
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        kind = type(model).__name__
        raise KpiInputError(
            f"model must be a non-empty nn.Sequential (its children are the split blocks), got {kind}"
        )
    if bits_per_value < 1:
        raise KpiInputError(f"bits_per_value must be >= 1, got {bits_per_value}")
    blocks: list[BlockProfile] = []
    activation = example_input
    with torch.no_grad():
        for name, child in model.named_children():
            with FlopCounterMode(display=False) as counter:
                activation = child(activation)
            blocks.append(
                BlockProfile(
                    name=name,
                    flops=float(counter.get_total_flops()),
                    output_shape=tuple(activation.shape),
                    output_bits=float(activation.numel() * bits_per_value),
                )
            )
    return tuple(blocks)


def split_profile_from_blocks(
    blocks: tuple[BlockProfile, ...], input_bits: float, *, name: str = "model", result_bits: float = 0.0
) -> SplitProfile:
    """Split points ``0..len(blocks)`` of a profiled model.

    Args:
        blocks: from :func:`profile_blocks`.
        input_bits: size of the raw input ``D0`` (sent at split point 0).
        name: the model's name.
        result_bits: bits sent when everything runs on the device (0, as in the paper's Table 3-13).

    """
    flops = [block.flops for block in blocks]
    total = sum(flops)
    points = []
    for k in range(len(blocks) + 1):
        ue = sum(flops[:k])
        if k == 0:
            sent = input_bits
        elif k == len(blocks):
            sent = result_bits
        else:
            sent = blocks[k - 1].output_bits
        points.append(SplitPoint(ue_flops=ue, tx_bits=sent, net_flops=total - ue))
    return SplitProfile(points=tuple(points), raw_input_bits=input_bits, name=name)


def profile_split_points(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    bits_per_value: int = 32,
    input_bits_per_value: int | None = None,
    name: str | None = None,
) -> SplitProfile:
    """Profile ``model`` and return its split points (see :func:`profile_blocks`).

    ``input_bits_per_value`` sizes the raw input (e.g. 8 for an 8-bit image); it defaults to
    ``bits_per_value``, which sizes the activations.
    """
    blocks = profile_blocks(model, example_input, bits_per_value=bits_per_value)
    input_bits = float(example_input.numel() * (input_bits_per_value or bits_per_value))
    return split_profile_from_blocks(blocks, input_bits, name=name or type(model).__name__)


def vgg16(num_classes: int = 1000, *, device: torch.device | str | None = None) -> nn.Sequential:
    """VGG-16 (configuration D) from plain torch layers, grouped for Table 3-13's split points.

    Children: ``stage1`` … ``stage5`` (3x3 convolutions with ReLU, then a 2x2 max-pool) and
    ``classifier`` (flatten, 25088→4096→4096→``num_classes`` with ReLU and dropout), so split points 0-6
    are: raw input, after each stage, everything on the device. Weights are randomly initialised (no
    download); build on ``device="meta"`` to profile without allocating the 138 M parameters. Expects
    224x224 inputs (the classifier takes 512x7x7).
    """
    stages: list[tuple[str, nn.Module]] = []
    in_channels = 3
    with torch.device(device) if device is not None else nullcontext():
        for index, widths in enumerate(VGG16_STAGES, start=1):
            layers: list[nn.Module] = []
            for width in widths:
                layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            stages.append((f"stage{index}", nn.Sequential(*layers)))
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
    return nn.Sequential(OrderedDict([*stages, ("classifier", classifier)]))


@dataclass(frozen=True, slots=True, eq=False)
class SplitChoice:
    """The chosen split point and the cost of every split point."""

    split_point: int
    objective: SplitObjective
    cost: SplitInferenceCost


def best_split(
    profile: SplitProfile,
    link: LinkProfile,
    ue: ComputeProfile,
    net: ComputeProfile,
    *,
    objective: SplitObjective = "latency",
    latency_weight: float = 0.5,
) -> SplitChoice:
    """Split point minimising latency, energy or their normalised weighted sum (3.2.3.1).

    Args:
        profile: split points of the model (from :func:`profile_split_points` or the paper's table).
        link: the live device-to-network rate and the link power.
        ue: the device's compute.
        net: the network's compute.
        objective: ``"latency"``, ``"energy"`` or ``"weighted"`` (see :func:`twin.kpi.split_objective`).
        latency_weight: weight of latency for ``"weighted"``.

    """
    cost = split_inference_cost(profile, link=link, ue=ue, net=net)
    return SplitChoice(
        split_point=choose_split(cost, objective, latency_weight=latency_weight),
        objective=objective,
        cost=cost,
    )
