"""Tests of layer-wise profiling of real torch models and the split-point choice."""

import pytest
import torch
from torch import nn

from twin.kpi import ComputeProfile, KpiInputError, LinkProfile
from twin.paper_eval import PAPER_DEFAULTS
from twin.split_profile import best_split, profile_blocks, profile_split_points, vgg16

UE = ComputeProfile(flops_per_s=1.4e12, power_w=30.0)
NET = ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@pytest.fixture(scope="module")
def vgg16_profile():
    """VGG-16 at 224x224, float32 activations, profiled on the meta device (no weights, no compute)."""
    model = vgg16(device="meta")
    return profile_split_points(model, torch.empty(1, 3, 224, 224, device="meta"), name="VGG-16")


def test_vgg16_has_138m_parameters_and_31_gflops(vgg16_profile) -> None:
    """VGG-16: 138.36 M parameters; FlopCounterMode counts 2 FLOPs per MAC, 15.47 GMACs -> 30.94 GFLOPs."""
    # Prepare
    model = vgg16(device="meta")
    # Execute
    params = sum(p.numel() for p in model.parameters())
    total_flops = vgg16_profile.points[-1].ue_flops
    # Assert
    assert params == 138_357_544
    assert total_flops / 1e9 == pytest.approx(31.0, rel=0.01)
    assert total_flops == pytest.approx(30_940_528_640)


def test_vgg16_split_points_match_table_3_13_flops(vgg16_profile) -> None:
    """Split points 0..6: monotone device FLOPs, Table 3-13's within 0.06 GFLOPs, constant totals."""
    # Prepare
    paper = PAPER_DEFAULTS.split_profile
    # Execute
    ue_gflops = vgg16_profile.ue_flops / 1e9
    totals = (vgg16_profile.ue_flops + vgg16_profile.net_flops) / 1e9
    # Assert
    assert len(vgg16_profile.points) == 7
    assert all(b >= a for a, b in zip(ue_gflops, ue_gflops[1:], strict=False))
    assert ue_gflops == pytest.approx(paper.ue_flops / 1e9, abs=0.06)
    assert totals == pytest.approx([totals[0]] * 7)


def test_vgg16_activation_sizes_at_32_bit(vgg16_profile) -> None:
    """Data sent per split point at float32: input 224*224*3*32 = 4.817 Mb, then the pooled stage outputs."""
    # Prepare
    expected_values = [
        224 * 224 * 3,
        112 * 112 * 64,
        56 * 56 * 128,
        28 * 28 * 256,
        14 * 14 * 512,
        7 * 7 * 512,
        0,
    ]
    # Execute
    tx_bits = vgg16_profile.tx_bits
    # Assert
    assert tx_bits.tolist() == [v * 32 for v in expected_values]
    assert vgg16_profile.raw_input_bits == 224 * 224 * 3 * 32


def test_input_bit_width_is_separate_from_activation_bit_width() -> None:
    """An 8-bit image is 224*224*3*8 = 1.204 Mb while activations stay at their own bit width."""
    # Prepare
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    # Execute
    profile = profile_split_points(model, torch.zeros(1, 3, 8, 8), bits_per_value=16, input_bits_per_value=8)
    # Assert
    assert profile.raw_input_bits == 3 * 8 * 8 * 8
    assert profile.tx_bits.tolist() == [3 * 8 * 8 * 8, 4 * 8 * 8 * 16, 4 * 8 * 8 * 16, 0]
    assert profile.ue_flops.tolist()[-1] == 2 * (8 * 8 * 4 * 3 * 9) + 2 * (256 * 2)


def test_profile_blocks_runs_real_tensors_too() -> None:
    """Profiling a small model on real CPU tensors gives per-block FLOPs and shapes."""
    # Prepare
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    # Execute
    blocks = profile_blocks(model, torch.zeros(2, 10), bits_per_value=32)
    # Assert
    assert [b.flops for b in blocks] == [2 * 2 * 10 * 20, 0.0, 2 * 2 * 20 * 3]
    assert blocks[-1].output_shape == (2, 3)
    with pytest.raises(KpiInputError, match="nn.Sequential"):
        profile_blocks(nn.Linear(2, 2), torch.zeros(1, 2))


def test_best_split_moves_to_the_device_as_the_rate_drops(vgg16_profile) -> None:
    """Fast link: send the raw input (split 0); slow link: run everything on the device (split 6)."""
    # Prepare
    fast = LinkProfile(rate_bps=1.95e9, power_w=636.0)
    slow = LinkProfile(rate_bps=20e6, power_w=636.0)
    # Execute
    on_fast = best_split(vgg16_profile, fast, UE, NET, objective="latency")
    on_slow = best_split(vgg16_profile, slow, UE, NET, objective="latency")
    frugal = best_split(vgg16_profile, fast, UE, NET, objective="energy")
    # Assert
    assert on_fast.split_point == 0
    assert on_slow.split_point == 6
    assert frugal.split_point == 6
    assert on_fast.cost.total_latency_s[0] < on_fast.cost.total_latency_s[6]
