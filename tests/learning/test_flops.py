"""FLOPs per sample: the analytic MLP count equals FlopCounterMode's; other modules are measured, cached."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from twin.learning import models
from twin.learning.models import MLP, inference_flops_per_sample, training_flops_per_sample

SHAPES = [(10, 16, 3), (7, 5, 2), (1, 1, 1), (64, 128, 10), (3, 200, 7), (129, 33, 2)]


def _counted(model: nn.Module, in_features: int, *, training: bool) -> float:
    """What the former implementation returned: FlopCounterMode over a batch of 64, per sample."""
    x = torch.zeros(64, in_features)
    if not training:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / 64
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), torch.zeros(64, dtype=torch.long)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 64


@pytest.mark.parametrize("shape", SHAPES)
def test_analytic_mlp_flops_equal_flop_counter_mode(shape: tuple[int, int, int]) -> None:
    """Training and inference FLOPs of an MLP equal FlopCounterMode's count exactly (same float)."""
    # Prepare
    in_features, hidden, n_classes = shape
    net = MLP(in_features, hidden, n_classes)
    # Execute
    train, infer = training_flops_per_sample(net, in_features), inference_flops_per_sample(net, in_features)
    # Assert
    assert train == _counted(net, in_features, training=True)
    assert infer == _counted(net, in_features, training=False)
    assert isinstance(train, float) and isinstance(infer, float)
    assert train == 4 * in_features * hidden + 6 * hidden * hidden + 6 * hidden * n_classes


@pytest.mark.parametrize("frozen", [("net.0.weight", "net.0.bias"), ("net.2.weight",), ("net.0.weight",)])
def test_analytic_mlp_flops_follow_frozen_layers(frozen: tuple[str, ...]) -> None:
    """Frozen parameters skip their weight gradient, and the input gradients before them, as counted."""
    # Prepare
    net = MLP(12, 9, 4)
    for name, p in net.named_parameters():
        p.requires_grad_(name not in frozen)
    # Execute / Assert
    assert training_flops_per_sample(net, 12) == _counted(net, 12, training=True)


def test_analytic_mlp_rejects_a_wrong_input_width() -> None:
    """The input width must be the first layer's, as the measured count (a shape error) required."""
    with pytest.raises(ValueError, match="in_features must be 10"):
        training_flops_per_sample(MLP(10, 4, 2), 11)


def test_other_modules_are_measured_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that is not an MLP is counted with FlopCounterMode once per (class, shapes)."""
    # Prepare
    calls: list[str] = []
    measure = models._counted_flops_per_sample

    def counting(model: nn.Module, in_features: int, kind: models._FlopKind) -> float:
        calls.append(kind)
        return measure(model, in_features, kind)

    monkeypatch.setattr(models, "_counted_flops_per_sample", counting)
    monkeypatch.setattr(models, "_flop_cache", {})

    def net(out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, out))

    # Execute
    first = [training_flops_per_sample(net(3), 6) for _ in range(3)]
    other = training_flops_per_sample(net(5), 6)
    infer = inference_flops_per_sample(net(3), 6)
    # Assert
    assert first == [_counted(net(3), 6, training=True)] * 3
    assert other == _counted(net(5), 6, training=True)
    assert infer == _counted(net(3), 6, training=False)
    assert calls == ["training", "training", "inference"]
