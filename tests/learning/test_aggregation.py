import pytest
import torch

from twin.learning.aggregation import ClientUpdate, FedAvg, FedAvgM, FedProx, make_strategy


def _u(agent: str, n: int, value: float) -> ClientUpdate:
    return ClientUpdate(agent, n, {"w": torch.full((2,), value)})


def test_fedavg_weights_by_sample_count() -> None:
    """FedAvg returns Σ n_k w_k / Σ n_k: (1·0 + 3·4) / 4 = 3."""
    new = FedAvg().aggregate({"w": torch.zeros(2)}, [_u("a", 1, 0.0), _u("b", 3, 4.0)])
    assert torch.allclose(new["w"], torch.tensor([3.0, 3.0]))


def test_fedavg_without_updates_keeps_global() -> None:
    """A round with no accepted update leaves the global model unchanged."""
    g = {"w": torch.tensor([1.0, 2.0])}
    assert torch.equal(FedAvg().aggregate(g, [])["w"], g["w"])


def test_fedprox_aggregates_like_fedavg_and_validates_mu() -> None:
    """FedProx's server step is the weighted mean; its μ is for clients and must be ≥ 0."""
    updates = [_u("a", 2, 1.0), _u("b", 2, 3.0)]
    assert torch.allclose(FedProx(0.1).aggregate({"w": torch.zeros(2)}, updates)["w"], torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="proximal_mu"):
        FedProx(-1.0)


def test_fedavgm_applies_server_momentum() -> None:
    """FedAvgM: v1 = Δ1 = 1, w1 = 1; v2 = 0.9·1 + (2−1) = 1.9, w2 = 2.9."""
    strategy = FedAvgM(momentum=0.9)
    w1 = strategy.aggregate({"w": torch.zeros(1)}, [ClientUpdate("a", 1, {"w": torch.ones(1)})])
    w2 = strategy.aggregate(w1, [ClientUpdate("a", 1, {"w": torch.full((1,), 2.0)})])
    assert torch.allclose(w1["w"], torch.ones(1))
    assert torch.allclose(w2["w"], torch.full((1,), 2.9))


def test_unknown_strategy_names_choices() -> None:
    """make_strategy refuses an unknown name and lists the valid ones."""
    with pytest.raises(ValueError, match="fedavg, fedprox, fedavgm"):
        make_strategy("bogus", 0.0)
