"""Small real models that devices train, and their measured cost (FLOPs, bits on the wire)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

_FLOP_BATCH = 64
_FlopKind = Literal["training", "inference"]
_flop_cache: dict[tuple[object, ...], float] = {}


class MLP(nn.Module):
    """A two-hidden-layer perceptron classifier over flat feature windows."""

    def __init__(self, in_features: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch ``(B, in_features)``."""
        return self.net(x)


def init_params(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Seeded initial parameters (Kaiming-uniform like torch's default, drawn from ``generator``)."""
    params: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        fan_in = p.shape[1] if p.ndim > 1 else p.shape[0]
        bound = 1.0 / fan_in**0.5
        params[name] = (torch.rand(p.shape, generator=generator) * 2 - 1) * bound
    return params


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def model_bits(model: nn.Module, bits_per_param: int = 32) -> int:
    """Size of the model's parameters on the wire, in bits."""
    return param_count(model) * bits_per_param


def training_flops_per_sample(model: nn.Module, in_features: int) -> float:
    """FLOPs of one forward + backward pass per sample, as ``FlopCounterMode`` counts them.

    :class:`MLP` is counted analytically (see :func:`mlp_flops_per_sample`); any other module is
    measured once with ``FlopCounterMode`` per (class, input width, parameter shapes) and cached.
    """
    return _flops_per_sample(model, in_features, "training")


def inference_flops_per_sample(model: nn.Module, in_features: int) -> float:
    """FLOPs of one forward pass per sample, as ``FlopCounterMode`` counts them (see above)."""
    return _flops_per_sample(model, in_features, "inference")


def mlp_flops_per_sample(model: MLP, in_features: int, *, training: bool) -> float:
    """FLOPs per sample of an :class:`MLP`, counted the way ``FlopCounterMode`` counts them.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of matrix products and nothing for biases,
    activations or the loss. A linear layer ``in → out`` costs ``2·in·out`` forward; its backward pass
    costs ``2·in·out`` for the weight gradient (when the weight requires one) and ``2·in·out`` for the
    gradient of its input (when its input requires one: never for the data, so not for the first layer,
    nor for a layer after only frozen layers).

    Raises:
        ValueError: ``in_features`` is not the width the model's first layer takes.

    """
    layers = [m for m in model.net if isinstance(m, nn.Linear)]
    if layers[0].in_features != in_features:
        raise ValueError(f"in_features must be {layers[0].in_features} for this MLP, got {in_features}")
    flops = 0
    input_needs_grad = False
    for layer in layers:
        macs = layer.in_features * layer.out_features
        flops += 2 * macs
        if training:
            weight_needs_grad = layer.weight.requires_grad
            flops += 2 * macs * (int(weight_needs_grad) + int(input_needs_grad))
            bias = layer.bias
            input_needs_grad = (
                input_needs_grad or weight_needs_grad or (bias is not None and bias.requires_grad)
            )
    return float(flops)


def _flops_per_sample(model: nn.Module, in_features: int, kind: _FlopKind) -> float:
    """Analytic for an :class:`MLP` of linear layers and ReLUs; otherwise measured once per shape, cached."""
    if type(model) is MLP and all(isinstance(m, nn.Linear | nn.ReLU) for m in model.net):
        return mlp_flops_per_sample(model, in_features, training=kind == "training")
    key = (
        kind,
        type(model),
        in_features,
        tuple((name, tuple(p.shape), p.requires_grad) for name, p in model.named_parameters()),
    )
    flops = _flop_cache.get(key)
    if flops is None:
        flops = _flop_cache[key] = _counted_flops_per_sample(model, in_features, kind)
    return flops


def _counted_flops_per_sample(model: nn.Module, in_features: int, kind: _FlopKind) -> float:
    """FLOPs per sample measured with ``FlopCounterMode`` (imported here: it is slow to load)."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    x = torch.zeros(_FLOP_BATCH, in_features)
    if kind == "inference":
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / _FLOP_BATCH
    y = torch.zeros(_FLOP_BATCH, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / _FLOP_BATCH
