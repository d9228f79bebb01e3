"""Model compression: real pruning and int8 weights, sizes, and the choice by link and compute."""

from __future__ import annotations

import math

import pytest
import torch

from twin.kpi import ComputeProfile
from twin.learning.models import MLP, init_params
from twin.services.compression import (
    CompressionConfig,
    CompressionTargets,
    DeviceBudget,
    choose_variant,
    compression_report,
    encoded_size_bits,
    from_wire,
    make_variants,
    prune_magnitude,
    quantise_int8,
    received,
    to_wire,
)


def _trained() -> tuple[MLP, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A small MLP trained on a separable task (so compression has accuracy to lose)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    net = MLP(6, 16, 3)
    params = {k: v.requires_grad_(True) for k, v in init_params(net, gen).items()}
    opt = torch.optim.SGD(params.values(), lr=0.3)
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y)
        loss.backward()
        opt.step()
    return net, {k: v.detach() for k, v in params.items()}, x, y


def _accuracy(net: MLP, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
    def evaluate(p: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            return float((torch.func.functional_call(net, p, (x,)).argmax(1) == y).float().mean())

    return evaluate


def _budget(agent_id: str, downlink_bps: float, flops_per_s: float = 1e9) -> DeviceBudget:
    return DeviceBudget(
        agent_id=agent_id,
        downlink_bps=downlink_bps,
        radio_power_w=0.2,
        compute=ComputeProfile(flops_per_s=flops_per_s, power_w=1.0),
        memory_bits=1e9,
        max_download_s=0.1,
        max_inference_s=1.0,
        rows=10,
    )


def test_pruning_zeroes_the_smallest_weights_and_int8_round_trips_within_half_a_step() -> None:
    """Magnitude pruning zeroes exactly the requested share of each weight matrix (biases kept); int8
    weights dequantise to within half a quantisation step of the original."""
    # Prepare
    _, params, _, _ = _trained()
    # Execute
    pruned = prune_magnitude(params, 0.5)
    q, scales = quantise_int8(params)
    # Assert
    for name, tensor in pruned.items():
        if name.endswith("weight"):
            assert int((tensor == 0).sum()) == tensor.numel() // 2
            kept_min = tensor[tensor != 0].abs().min()
            assert kept_min >= params[name].abs().flatten().kthvalue(tensor.numel() // 2).values
        else:
            assert torch.equal(tensor, params[name])
    for name, qt in q.items():
        assert qt.dtype == torch.int8
        assert float((qt.float() * scales[name] - params[name]).abs().max()) <= scales[name] / 2 + 1e-7
    assert encoded_size_bits(params, 8) < encoded_size_bits(pruned, 32) < encoded_size_bits(params, 32)


def test_variants_have_measured_accuracy_and_shrink_with_bits_and_sparsity() -> None:
    """Every variant's accuracy is measured on data; int8 and pruning make it smaller and cheaper."""
    # Prepare
    net, params, x, y = _trained()
    # Execute
    variants = make_variants(
        params,
        flops_per_sample=1000.0,
        evaluate=_accuracy(net, x, y),
        config=CompressionConfig(sparsities=(0.0, 0.8), max_accuracy_loss=1.0),
    )
    # Assert
    by_name = {v.name: v for v in variants}
    assert list(by_name)[0] == "fp32"
    assert set(by_name) == {"fp32", "int8", "fp32-pruned80", "int8-pruned80"}
    assert by_name["fp32"].accuracy > 0.85
    assert by_name["int8-pruned80"].size_bits < by_name["int8"].size_bits < by_name["fp32"].size_bits
    assert by_name["fp32-pruned80"].flops_per_sample < by_name["fp32"].flops_per_sample
    assert by_name["int8-pruned80"].accuracy != by_name["fp32"].accuracy  # 80 % pruning is felt


def test_compression_chooses_the_smaller_model_on_the_weaker_link() -> None:
    """Same device, same variants: a link too weak to deliver the larger model in time gets a smaller one,
    and the strong link keeps the most accurate."""
    # Prepare
    net, params, x, y = _trained()
    variants = make_variants(
        params,
        flops_per_sample=1000.0,
        evaluate=_accuracy(net, x, y),
        config=CompressionConfig(max_accuracy_loss=1.0),
    )
    strong_bps = 100 * variants[0].size_bits  # delivers the original in 10 ms
    smallest = min(v.size_bits for v in variants)
    weak_bps = 1.001 * smallest / 0.1  # only the smallest variant arrives within the 0.1 s budget
    # Execute
    strong = choose_variant(variants, _budget("near", strong_bps))
    weak = choose_variant(variants, _budget("far", weak_bps))
    # Assert
    assert strong.fits and weak.fits
    assert strong.variant.accuracy == max(v.accuracy for v in variants)
    assert weak.variant.size_bits < strong.variant.size_bits
    assert weak.variant.size_bits == smallest
    assert weak.download_s <= 0.1 < strong.variant.size_bits / weak_bps
    assert weak.energy_j < weak.original_j


def test_a_device_no_variant_fits_gets_the_smallest_and_is_reported_over_budget() -> None:
    """Without a link nothing can be delivered: the smallest variant, flagged, and the report fails."""
    # Prepare
    net, params, x, y = _trained()
    config = CompressionConfig()
    variants = make_variants(params, flops_per_sample=1000.0, evaluate=_accuracy(net, x, y), config=config)
    # Execute
    choice = choose_variant(variants, _budget("unserved", 0.0))
    report = compression_report(
        "compression", variants, [choice], CompressionTargets(), config, tls=False, authenticated=True
    )
    # Assert
    assert not choice.fits and math.isinf(choice.download_s)
    assert choice.variant.size_bits == min(v.size_bits for v in variants)
    within = next(i for i in report.indicators if i.name == "devices_within_budget")
    assert not within.passed and not report.passed


def test_the_wire_form_carries_int8_and_bitmasks_and_rebuilds_exactly_what_a_receiver_computes_with() -> None:
    """A pruned int8 weight travels as a uint8 bitmask and its int8 non-zeros; rebuilt from the decoded
    tensors it is each kept weight's ``q · s`` and zero elsewhere; a mask that disagrees is refused."""
    # Prepare
    _, params, _, _ = _trained()
    pruned = prune_magnitude(params, 0.8)
    # Execute
    wire = to_wire(pruned, 8)
    rebuilt = from_wire(received(wire), params)
    # Assert
    assert wire["net.0.weight::mask"].dtype == torch.uint8 and "net.0.weight" not in wire
    assert wire["net.0.weight::values"].dtype == torch.int8
    assert wire["net.0.bias"].dtype == torch.float32
    q, scales = quantise_int8(pruned)
    for name, tensor in rebuilt.items():
        expected = q[name].float() * torch.tensor(scales[name]) if name in q else pruned[name]
        assert torch.equal(tensor, expected)
    assert encoded_size_bits(pruned, 8) < encoded_size_bits(params, 8) < encoded_size_bits(params, 32)
    bad = received(wire)
    bad["net.0.weight::mask"] = bad["net.0.weight::mask"].clone()
    bad["net.0.weight::mask"][0] = float(int(bad["net.0.weight::mask"][0]) ^ 1)  # one more or one less
    with pytest.raises(ValueError, match="mask bits"):
        from_wire(bad, params)
    with pytest.raises(ValueError, match="unexpected"):
        from_wire({**received(wire), "extra": torch.zeros(1)}, params)
