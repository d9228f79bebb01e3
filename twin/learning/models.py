"""Small real models that devices train, and their measured cost (FLOPs, bits on the wire)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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
    """FLOPs of one forward + backward pass per sample, measured with ``FlopCounterMode``."""
    batch = 64
    x = torch.zeros(batch, in_features)
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def inference_flops_per_sample(model: nn.Module, in_features: int) -> float:
    """FLOPs of one forward pass per sample, measured with ``FlopCounterMode``."""
    batch = 64
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch, in_features))
    return counter.get_total_flops() / batch
