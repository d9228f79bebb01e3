"""Store and forward: a transfer waits without a link and resumes; late updates are rebased and discounted."""

from __future__ import annotations

import pytest
import torch

from agents.store_forward import LinkNow, Transfer, advance
from twin.learning.aggregation import ClientUpdate, weighted_average
from twin.learning.staleness import StaleUpdate, aggregate_with_staleness, staleness_discount

NO_LINK = LinkNow(0.0, 0.0, float("inf"), "none")
SATELLITE = LinkNow(1e6, 1e5, 0.0128, "satellite")


def _transfer(bits: float = 1e5, flops: float = 1e9) -> Transfer:
    return Transfer("cam", 1, 0.0, [("down", bits), ("compute", flops), ("up", bits)])


def test_a_transfer_is_stored_while_there_is_no_link_and_forwarded_later() -> None:
    """Nothing moves without a link; once a pass serves the device the update arrives, delay included."""
    # Prepare
    transfer = _transfer()
    # Execute: 30 s without a link, then the satellite, second by second
    for second in range(30):
        advance(transfer, second + 1.0, NO_LINK, 1e12)
    stored_phases = list(transfer.phases)
    for second in range(30, 40):
        advance(transfer, second + 1.0, SATELLITE, 1e12)
    # Assert
    assert stored_phases == [("down", 1e5), ("compute", 1e9), ("up", 1e5)]
    expected = 30.0 + 1e5 / 1e6 + 0.0128 + 1e9 / 1e12 + 1e5 / 1e5 + 0.0128
    assert transfer.done_s == pytest.approx(expected)
    assert transfer.contacts == ["satellite", "satellite"]


def test_an_upload_interrupted_by_the_end_of_a_pass_resumes_where_it_stopped() -> None:
    """Half the bits go in one pass, the rest in the next: the arrival is the twin's, from the links."""
    # Prepare
    transfer = Transfer("drone", 2, 0.0, [("up", 2e5)])
    # Execute
    advance(transfer, 1.0, SATELLITE, 1e12)  # 1e5 bits sent
    advance(transfer, 100.0, NO_LINK, 1e12)  # pass over: stored
    advance(transfer, 101.0, SATELLITE, 1e12)  # next pass: the last bits
    advance(transfer, 102.0, SATELLITE, 1e12)  # their propagation delay
    # Assert
    assert transfer.done_s == pytest.approx(101.0 + 0.0128)


def _params(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3,), value)}


def test_fresh_updates_aggregate_exactly_as_fedavg() -> None:
    """With no late update the rebased-delta aggregation is FedAvg's weighted mean."""
    # Prepare
    base = _params(1.0)
    fresh = [StaleUpdate("a", 3, 10, _params(2.0), base), StaleUpdate("b", 3, 30, _params(4.0), base)]
    # Execute
    new = aggregate_with_staleness(base, fresh, current_round=3, exponent=0.5)
    fedavg = weighted_average([ClientUpdate(u.agent_id, u.n_samples, u.params) for u in fresh])
    # Assert
    torch.testing.assert_close(new["w"], fedavg["w"])


def test_a_late_update_counts_as_its_change_discounted_by_staleness() -> None:
    """An update from round 1 joins round 3 as (w_i − b_i) with weight n·(1+2)^−a."""
    # Prepare
    now = _params(5.0)
    late = StaleUpdate("cam", 1, 10, _params(3.0), _params(1.0))  # it moved its base by +2
    fresh = StaleUpdate("drone", 3, 10, _params(5.0), now)  # it did not move the model
    # Execute
    new = aggregate_with_staleness(now, [late, fresh], current_round=3, exponent=1.0)
    # Assert
    p_late = staleness_discount(2, 1.0) / (staleness_discount(2, 1.0) + 1.0)
    assert staleness_discount(2, 1.0) == pytest.approx(1 / 3)
    torch.testing.assert_close(new["w"], torch.full((3,), 5.0 + 2.0 * p_late))
