import numpy as np
import pytest
import torch

from twin.learning.cohort import LocalData, evaluate, make_schedule, train_cohort, train_loop
from twin.learning.models import MLP, init_params, training_flops_per_sample


def _cohort(n_devices: int = 12) -> tuple[MLP, dict[str, torch.Tensor], list[LocalData], list[int]]:
    net = MLP(10, 16, 3)
    params = init_params(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    sizes = [int(s) for s in np.random.default_rng(2).integers(5, 60, n_devices)]
    data = [LocalData(torch.randn(n, 10, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in sizes]
    return net, params, data, sizes


@pytest.mark.parametrize("mu", [0.0, 0.05])
def test_cohort_matches_loop(mu: float) -> None:
    """vmap cohort training gives the same parameters as a loop over devices (FedAvg and FedProx)."""
    # Prepare
    net, params, data, sizes = _cohort()
    schedule = make_schedule(
        sizes, epochs=2, batch_size=8, rngs=[np.random.default_rng(i) for i in range(len(sizes))]
    )
    # Execute
    cohort = train_cohort(net, params, data, schedule, lr=0.1, proximal_mu=mu)
    loop = train_loop(net, params, data, schedule, lr=0.1, proximal_mu=mu)
    # Assert
    for a, b in zip(cohort, loop, strict=True):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(cohort[0][k], params[k]) for k in params)  # it did train


def test_devices_with_fewer_samples_stop_early() -> None:
    """A device whose schedule is exhausted keeps its parameters while others keep training."""
    net, params, _, _ = _cohort(2)
    g = torch.Generator().manual_seed(9)
    data = [LocalData(torch.randn(40, 10, generator=g), torch.randint(0, 3, (40,), generator=g))] * 2
    schedule = make_schedule(
        [4, 40], epochs=1, batch_size=4, rngs=[np.random.default_rng(0), np.random.default_rng(1)]
    )
    assert schedule.active[:, 0].sum() == 1 and schedule.active[:, 1].sum() == 10
    short = [LocalData(data[0].x[:4], data[0].y[:4]), LocalData(data[1].x[:40], data[1].y[:40])]
    one_step = train_loop(
        net,
        params,
        [short[0]],
        make_schedule([4], epochs=1, batch_size=4, rngs=[np.random.default_rng(0)]),
        lr=0.1,
    )[0]
    cohort = train_cohort(net, params, short, schedule, lr=0.1)
    for name in params:
        torch.testing.assert_close(cohort[0][name], one_step[name])


def test_schedule_is_seeded() -> None:
    """Same generators → same minibatch plan; another seed → another plan."""
    a = make_schedule([30], epochs=2, batch_size=8, rngs=[np.random.default_rng(5)])
    b = make_schedule([30], epochs=2, batch_size=8, rngs=[np.random.default_rng(5)])
    c = make_schedule([30], epochs=2, batch_size=8, rngs=[np.random.default_rng(6)])
    assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)


def test_training_improves_separable_task() -> None:
    """On a linearly separable task local training raises accuracy far above chance."""
    net = MLP(2, 8, 2)
    params = init_params(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    schedule = make_schedule([200], epochs=5, batch_size=20, rngs=[np.random.default_rng(0)])
    trained = train_cohort(net, params, [LocalData(x, y)], schedule, lr=0.5)[0]
    assert evaluate(net, trained, x, y)[0] > 0.9


def test_training_flops_are_about_three_forward_passes() -> None:
    """Forward+backward FLOPs ≈ 3 × forward of an MLP: 3 × 2 × (10·16 + 16·16 + 16·3) = 2784."""
    flops = training_flops_per_sample(MLP(10, 16, 3), 10)
    assert 2000 < flops < 3000


def test_keyed_schedule_is_a_shuffle_per_epoch_padded_and_masked() -> None:
    """Every epoch visits each of a device's samples once; padding is masked; finished devices idle."""
    from twin.learning.cohort import keyed_schedule

    sizes = [5, 30, 0, 17]
    s = keyed_schedule(sizes, epochs=2, batch_size=8, keys=[11, 12, 13, 14])
    assert s.index.shape == (8, 4, 8) and s.mask.shape == (8, 4, 8) and s.active.shape == (8, 4)
    for d, n in enumerate(sizes):
        per_epoch = -(-n // 8)
        assert s.active[:, d].tolist() == [1.0] * (2 * per_epoch) + [0.0] * (8 - 2 * per_epoch)
        for e in range(2):
            steps = slice(e * per_epoch, (e + 1) * per_epoch)
            seen = s.index[steps, d][s.mask[steps, d] > 0].tolist()
            assert sorted(seen) == list(range(n))  # a permutation of the device's samples
        assert (s.index[:, d][s.mask[:, d] == 0] == 0).all()
    first, second = (s.index[0:4, 1][s.mask[0:4, 1] > 0], s.index[4:8, 1][s.mask[4:8, 1] > 0])
    assert not torch.equal(first, second)  # a new order each epoch


def test_a_devices_keyed_schedule_depends_only_on_its_key_and_size() -> None:
    """Alone or in any cohort, at any position: the same batches (so hosts and workers agree)."""
    from twin.learning.cohort import keyed_schedule

    alone = keyed_schedule([17], epochs=3, batch_size=4, keys=[99])
    mixed = keyed_schedule([40, 17, 3], epochs=3, batch_size=4, keys=[1, 99, 2])
    steps = alone.index.shape[0]
    assert torch.equal(alone.index[:, 0], mixed.index[:steps, 1])
    assert torch.equal(alone.mask[:, 0], mixed.mask[:steps, 1])
    assert (mixed.active[steps:, 1] == 0).all()
    other = keyed_schedule([17], epochs=3, batch_size=4, keys=[100])
    assert not torch.equal(alone.index, other.index)


def test_shards_of_a_cohort_train_to_the_same_bits_as_the_whole_on_parallel_threads() -> None:
    """The host trains a cohort in shards on threads: each device's parameters are bit-identical."""
    from twin import parallel
    from twin.learning.cohort import StackedData, keyed_schedule, train_cohort_stacked

    net, params, data, sizes = _cohort(40)
    stacked = StackedData.of(data)
    schedule = keyed_schedule(sizes, epochs=2, batch_size=8, keys=list(range(40)))
    whole = train_cohort_stacked(net, params, stacked, schedule, lr=0.1, proximal_mu=0.01)
    with parallel.using_threads(3):
        bounds = parallel.shard_bounds(40, min_shard=5, align=3)
        parts = parallel.map_shards(
            lambda a, b: train_cohort_stacked(
                net, params, stacked.rows(a, b), schedule.rows(a, b), lr=0.1, proximal_mu=0.01
            ),
            bounds,
        )
    assert len(bounds) == 3
    for name in whole:
        assert torch.equal(whole[name], torch.cat([p[name] for p in parts]))


def test_argmax_sharded_gives_the_same_classes_on_one_thread_or_several() -> None:
    """The coverage evaluation's forward pass: fixed blocks, so thread count never changes a class."""
    from twin import parallel
    from twin.learning.cohort import argmax_sharded

    net, params, _, _ = _cohort(1)
    x = torch.randn(10_000, 10, generator=torch.Generator().manual_seed(3))
    with parallel.using_threads(1):
        one = argmax_sharded(net, params, x, block=512)
    with parallel.using_threads(3):
        three = argmax_sharded(net, params, x, block=512)
    assert torch.equal(one, three)
    reference = torch.func.functional_call(net, params, (x,)).argmax(dim=1)
    assert (one == reference).float().mean() > 0.999  # the same model (ties may round apart)


def test_a_cnn_devices_result_does_not_depend_on_its_cohort() -> None:
    """The ``vmap`` path (any model but the MLP) steps fixed blocks of devices: a device trains to the
    same bits alone, among 3 or among 7 (a batched convolution rounds by its batch size otherwise)."""
    from twin.learning.cnn import IMAGE_PIXELS, SmallCNN
    from twin.learning.cohort import keyed_schedule, train_cohort_stacked
    from twin.learning.models import init_params as init

    net = SmallCNN(3, (4, 4, 4), 8)
    params = init(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    data = [LocalData(torch.rand(12, IMAGE_PIXELS, generator=g), torch.randint(0, 3, (12,), generator=g))]
    data *= 7
    keys = list(range(7))

    def robot_3(n: int, at: int) -> dict[str, torch.Tensor]:
        """Device with key 3 trained at position ``at`` of a cohort of ``n``."""
        order = [k for k in keys if k != 3][: n - 1]
        order.insert(at, 3)
        schedule = keyed_schedule([12] * n, epochs=1, batch_size=4, keys=order)
        out = train_cohort_stacked(net, params, data[:n], schedule, lr=0.1)
        return {k: v[at] for k, v in out.items()}

    alone = robot_3(1, 0)
    for n, at in ((3, 1), (7, 5), (7, 0)):
        other = robot_3(n, at)
        assert all(torch.equal(alone[k], other[k]) for k in alone), (n, at)
    assert any(not torch.equal(alone[k], params[k]) for k in params)  # it trained
