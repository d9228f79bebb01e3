"""Local training of many devices that share an architecture, as one vectorised cohort.

``train_cohort`` stacks the devices' parameters and runs ``vmap(grad(loss))`` over them
(``torch.func``); ``train_loop`` trains each device on its own with ordinary autograd. Both follow
the same minibatch schedule (``make_schedule``) and plain SGD, so they give the same parameters —
the loop is the reference the cohort is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from twin.parallel import map_shards, shard_bounds
from twin.rng import counter_uniforms

Params = dict[str, torch.Tensor]


@dataclass(frozen=True, slots=True)
class LocalData:
    """One device's training data."""

    x: torch.Tensor  # (n, features) float32
    y: torch.Tensor  # (n,) int64


@dataclass(frozen=True, slots=True)
class StackedData:
    """A cohort's data padded: ``x`` ``(devices, n_max, features)``, ``y`` ``(devices, n_max)``."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, data: list[LocalData]) -> StackedData:
        """Stack (and zero-pad) the devices' data, in order."""
        if not data:
            raise ValueError("StackedData needs at least one device")
        n_max = max(d.x.shape[0] for d in data)
        x = torch.zeros(len(data), n_max, data[0].x.shape[1])
        y = torch.zeros(len(data), n_max, dtype=torch.long)
        for i, d in enumerate(data):
            x[i, : d.x.shape[0]] = d.x
            y[i, : d.y.shape[0]] = d.y
        return cls(x, y)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self, start: int, end: int) -> StackedData:
        """Devices ``start…end-1`` (views, no copy)."""
        return StackedData(self.x[start:end], self.y[start:end])


@dataclass(frozen=True, slots=True)
class Schedule:
    """Minibatch plan for a cohort: indices, padding mask and active-step flags."""

    index: torch.Tensor  # (steps, devices, batch) int64
    mask: torch.Tensor  # (steps, devices, batch) float32, 0 for padding
    active: torch.Tensor  # (steps, devices) float32, 0 once a device has finished

    def rows(self, start: int, end: int) -> Schedule:
        """The schedule of devices ``start…end-1`` (views; the same number of steps)."""
        return Schedule(self.index[:, start:end], self.mask[:, start:end], self.active[:, start:end])


def make_schedule(
    sizes: list[int], *, epochs: int, batch_size: int, rngs: list[np.random.Generator]
) -> Schedule:
    """Shuffled minibatches per device and epoch; the last batch of an epoch is padded and masked."""
    if len(sizes) != len(rngs):
        raise ValueError("one generator per device is required")
    per_device: list[list[np.ndarray]] = []
    for n, rng in zip(sizes, rngs, strict=True):
        batches: list[np.ndarray] = []
        for _ in range(epochs):
            order = rng.permutation(n)
            batches.extend(order[i : i + batch_size] for i in range(0, n, batch_size))
        per_device.append(batches)
    steps = max((len(b) for b in per_device), default=0)
    index = np.zeros((steps, len(sizes), batch_size), dtype=np.int64)
    mask = np.zeros((steps, len(sizes), batch_size), dtype=np.float32)
    active = np.zeros((steps, len(sizes)), dtype=np.float32)
    for d, batches in enumerate(per_device):
        for s, batch in enumerate(batches):
            index[s, d, : len(batch)] = batch
            mask[s, d, : len(batch)] = 1.0
            active[s, d] = 1.0
    return Schedule(torch.from_numpy(index), torch.from_numpy(mask), torch.from_numpy(active))


EPOCH_STRIDE = 1 << 32
"""Draw ``e · EPOCH_STRIDE + j`` of a device's key orders its sample ``j`` in epoch ``e``."""


def keyed_schedule(sizes: list[int], *, epochs: int, batch_size: int, keys: list[int]) -> Schedule:
    """:func:`make_schedule` drawn from counter-based streams, for a whole cohort in a few array ops.

    Device ``d``'s order of its samples in epoch ``e`` sorts the draws ``e · 2³² + j`` (``j`` < its
    size) of the stream keyed ``keys[d]`` (:func:`~twin.rng.counter_uniforms`): a pure function of its
    key and size, so its batches do not depend on the other devices of the cohort (a host's cohort, a
    worker's share). A Generator per device and round cost ≈ 35 µs to make and the loop over
    devices ≈ 15 µs more; here 200 devices take ≈ 0.3 ms.
    """
    if len(sizes) != len(keys):
        raise ValueError("one key per device is required")
    n_dev = len(sizes)
    n = np.asarray(sizes, dtype=np.int64).reshape(n_dev)
    if (n < 0).any() or epochs < 0 or batch_size < 1:
        raise ValueError("sizes and epochs must be >= 0 and batch_size >= 1")
    n_max = int(n.max(initial=0))
    per_epoch = -(-n // batch_size)  # batches a device takes per epoch
    steps = int((epochs * per_epoch).max(initial=0))
    if steps == 0:
        empty = torch.zeros((0, n_dev, batch_size))
        return Schedule(empty.long(), empty, torch.zeros((0, n_dev)))
    counters = (
        np.arange(epochs, dtype=np.uint64)[:, None] * np.uint64(EPOCH_STRIDE)
        + np.arange(n_max, dtype=np.uint64)[None, :]
    )
    u = counter_uniforms(np.asarray(keys, dtype=np.uint64)[:, None, None], counters[None])
    u[np.broadcast_to(np.arange(n_max)[None, None, :] >= n[:, None, None], u.shape)] = 2.0  # not samples
    order = np.argsort(u, axis=2, kind="stable")  # (devices, epochs, n_max): each epoch's permutation
    s = np.arange(steps)[None, :, None]
    slot = np.arange(batch_size)[None, None, :]
    nb = np.maximum(per_epoch, 1)[:, None, None]
    epoch = s // nb
    offset = (s % nb) * batch_size + slot  # position in the epoch's order
    valid = (epoch < epochs) & (offset < n[:, None, None])  # (devices, steps, batch)
    picked = order[
        np.arange(n_dev)[:, None, None], np.minimum(epoch, epochs - 1), np.minimum(offset, max(n_max - 1, 0))
    ]
    index = np.where(valid, picked, 0).transpose(1, 0, 2)
    mask = valid.transpose(1, 0, 2).astype(np.float32)
    active = (s[..., 0] < (epochs * per_epoch)[:, None]).T.astype(np.float32)
    return Schedule(
        torch.from_numpy(np.ascontiguousarray(index)),
        torch.from_numpy(np.ascontiguousarray(mask)),
        torch.from_numpy(np.ascontiguousarray(active)),
    )


def steps_per_device(n_samples: int, epochs: int, batch_size: int) -> int:
    """Number of SGD steps a device with ``n_samples`` takes."""
    return epochs * math.ceil(n_samples / batch_size)


def _loss(
    model: nn.Module,
    params: Params,
    anchor: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    mu: float,
) -> torch.Tensor:
    logits = functional_call(model, params, (x,))
    per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
    loss = (per_sample * m).sum() / m.sum().clamp_min(1.0)
    if mu > 0:
        prox = sum(((params[k] - anchor[k]) ** 2).sum() for k in params)
        loss = loss + 0.5 * mu * prox
    return loss


def train_cohort(
    model: nn.Module,
    global_params: Params,
    data: list[LocalData],
    schedule: Schedule,
    *,
    lr: float,
    proximal_mu: float = 0.0,
) -> list[Params]:
    """Train every device of the cohort at once with ``vmap(grad(loss))``; returns per-device params."""
    if not data:
        return []
    stacked = train_cohort_stacked(model, global_params, data, schedule, lr=lr, proximal_mu=proximal_mu)
    return [{k: v[i].clone() for k, v in stacked.items()} for i in range(len(data))]


def train_cohort_stacked(
    model: nn.Module,
    global_params: Params,
    data: list[LocalData] | StackedData,
    schedule: Schedule,
    *,
    lr: float,
    proximal_mu: float = 0.0,
) -> Params:
    """:func:`train_cohort`, its result stacked: each tensor ``(devices, *shape)``, device order kept.

    ``data`` may come stacked already (:class:`StackedData`, e.g. kept by a host between rounds).
    Thread-safe for the MLP (:func:`shardable`): shards of one cohort may train on parallel threads.
    """
    stacked = data if isinstance(data, StackedData) else StackedData.of(data) if data else None
    if stacked is None or len(stacked) == 0:
        raise ValueError("train_cohort_stacked needs at least one device")
    n_dev = len(stacked)
    x_all, y_all = stacked.x, stacked.y
    anchor = {k: v.detach() for k, v in global_params.items()}
    layers = _mlp_layers(model, global_params)
    if layers is not None:
        # All parameters in one (devices, P) buffer, tensors in name order: what a packed update
        # sends (broker.update_batch.Layout), so it needs no copy.
        names = sorted(global_params)
        sizes = [global_params[k].numel() for k in names]
        flat = torch.cat([global_params[k].detach().reshape(-1) for k in names]).repeat(n_dev, 1)
        views = dict(zip(names, flat.split(sizes, dim=1), strict=True))
        mlp = {k: views[k].view(n_dev, *global_params[k].shape) for k in global_params}
        return _train_mlp(layers, mlp, anchor, x_all, y_all, schedule, lr=lr, mu=proximal_mu)
    blocks = [
        _train_vmap_block(
            model, anchor, stacked, schedule, start, min(n_dev, start + VMAP_BLOCK), lr, proximal_mu
        )
        for start in range(0, n_dev, VMAP_BLOCK)
    ]
    return {k: torch.cat([b[k] for b in blocks]) for k in global_params}


VMAP_BLOCK = 4
"""Devices a ``vmap`` step computes together: always this many (the last block padded), because a
batched convolution's rounding depends on how many devices it batches — without fixed blocks a device's
result would depend on its cohort (and so on how many workers share the devices)."""


def _train_vmap_block(
    model: nn.Module,
    anchor: Params,
    stacked: StackedData,
    schedule: Schedule,
    start: int,
    end: int,
    lr: float,
    mu: float,
) -> Params:
    """Devices ``start…end-1`` trained with ``vmap(grad(loss))``, padded to :data:`VMAP_BLOCK` devices.

    Padding devices have zero data and no active step: they never change, and their rows are dropped.
    """
    k, pad = end - start, VMAP_BLOCK - (end - start)
    x_all, y_all, sched = stacked.x[start:end], stacked.y[start:end], schedule.rows(start, end)
    index, mask, active = sched.index, sched.mask, sched.active
    if pad:
        x_all = torch.cat([x_all, x_all.new_zeros(pad, *x_all.shape[1:])])
        y_all = torch.cat([y_all, y_all.new_zeros(pad, *y_all.shape[1:])])
        index = torch.cat([index, index.new_zeros(index.shape[0], pad, *index.shape[2:])], dim=1)
        mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad, *mask.shape[2:])], dim=1)
        active = torch.cat([active, active.new_zeros(active.shape[0], pad)], dim=1)
    n = VMAP_BLOCK
    params = {key: v.detach().unsqueeze(0).repeat(n, *([1] * v.ndim)).clone() for key, v in anchor.items()}
    rows = torch.arange(n).unsqueeze(1)

    def loss_one(p: Params, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return _loss(model, p, anchor, x, y, m, mu)

    grad_all = vmap(grad(loss_one))
    for s in range(index.shape[0]):
        idx = index[s]
        grads = grad_all(params, x_all[rows, idx], y_all[rows, idx], mask[s])
        step = lr * active[s]
        for key in params:
            shape = (n,) + (1,) * (params[key].ndim - 1)
            params[key] = params[key] - step.view(shape) * grads[key]
    return {key: v[:k] for key, v in params.items()}


def shardable(model: nn.Module, params: Params) -> bool:
    """Whether shards of a cohort of ``model`` may train on parallel threads.

    True for the MLP, whose training touches no module state; the ``vmap`` path calls the module
    itself (``functional_call`` swaps its parameters in place), so it trains on one thread.
    """
    return _mlp_layers(model, params) is not None


def _mlp_layers(model: nn.Module, params: Params) -> list[str] | None:
    """Names of the Linear layers of an :class:`~twin.learning.models.MLP` (Linear/ReLU), else None."""
    from twin.learning.models import MLP

    if type(model) is not MLP:
        return None
    modules = list(model.net)
    layers = [f"net.{i}" for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    shape_ok = all(
        isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, nn.ReLU) for i, m in enumerate(modules)
    )
    names = {f"{layer}.{part}" for layer in layers for part in ("weight", "bias")}
    return layers if shape_ok and len(modules) % 2 == 1 and names == set(params) else None


def _train_mlp(
    layers: list[str],
    params: Params,
    anchor: Params,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    schedule: Schedule,
    *,
    lr: float,
    mu: float,
) -> Params:
    """The MLP's cohort training with its gradients written out (batched matrix products, no autograd).

    The same loss, schedule and SGD as the ``vmap(grad(loss))`` path — masked mean cross-entropy plus
    (μ/2)·‖w − w_global‖² — about twice as fast, since no graph is recorded or transformed; each device's
    products have the same shapes whatever the cohort's size, so its result does not depend on it.
    """
    n_dev, n_max, features = x_all.shape
    # Row r·n_max + j of the flat views is device r's sample j: a step's minibatch is one index_select.
    x_flat, y_flat = x_all.reshape(n_dev * n_max, features), y_all.reshape(n_dev * n_max)
    base = (torch.arange(n_dev) * n_max).unsqueeze(1)
    weights = [f"{layer}.weight" for layer in layers]
    biases = [f"{layer}.bias" for layer in layers]
    minus_one = torch.full((*schedule.index.shape[1:], 1), -1.0)
    for s in range(schedule.index.shape[0]):
        flat_idx = (schedule.index[s] + base).reshape(-1)
        a = x_flat.index_select(0, flat_idx).view(n_dev, -1, features)  # (devices, batch, features)
        yb, mb = y_flat.index_select(0, flat_idx).view(n_dev, -1), schedule.mask[s]
        inputs: list[torch.Tensor] = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            inputs.append(a)
            a = torch.baddbmm(params[b].unsqueeze(1), a, params[w].transpose(1, 2))
            if i < len(weights) - 1:
                a = a.clamp_min_(0.0)
        g = torch.softmax(a, dim=2)  # d(mean masked cross-entropy)/d(logits)
        g.scatter_add_(2, yb.unsqueeze(2), minus_one)
        g.mul_((mb / mb.sum(dim=1, keepdim=True).clamp_min(1.0)).unsqueeze(2))
        step = (-lr * schedule.active[s]).view(n_dev, 1, 1)
        for i in range(len(weights) - 1, -1, -1):
            w, b = weights[i], biases[i]
            grad_w = torch.bmm(g.transpose(1, 2), inputs[i])
            grad_b = g.sum(dim=1)
            if i > 0:
                # ReLU's gradient: through where its output (this layer's input) is > 0
                g = torch.ops.aten.threshold_backward(torch.bmm(g, params[w]), inputs[i], 0.0)
            if mu > 0:
                grad_w.add_(params[w] - anchor[w], alpha=mu)
                grad_b.add_(params[b] - anchor[b], alpha=mu)
            params[w].addcmul_(step, grad_w)  # in place: the tensors are views of one buffer
            params[b].addcmul_(step.view(n_dev, 1), grad_b)
    return params


def train_loop(
    model: nn.Module,
    global_params: Params,
    data: list[LocalData],
    schedule: Schedule,
    *,
    lr: float,
    proximal_mu: float = 0.0,
) -> list[Params]:
    """Reference: train each device separately with autograd, same schedule and SGD as the cohort."""
    anchor = {k: v.detach() for k, v in global_params.items()}
    out: list[Params] = []
    for d, local in enumerate(data):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in global_params.items()}
        for s in range(schedule.index.shape[0]):
            if schedule.active[s, d] == 0:
                continue
            idx = schedule.index[s, d]
            loss = _loss(model, params, anchor, local.x[idx], local.y[idx], schedule.mask[s, d], proximal_mu)
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                params = {
                    k: (p - lr * g).requires_grad_(True)
                    for (k, p), g in zip(params.items(), grads, strict=True)
                }
        out.append({k: v.detach() for k, v in params.items()})
    return out


@torch.no_grad()
def evaluate(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``params`` on ``(x, y)``."""
    logits = functional_call(model, params, (x,))
    loss = float(nn.functional.cross_entropy(logits, y))
    accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return accuracy, loss


@torch.no_grad()
def predict_proba(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities of ``params`` on ``x``."""
    return torch.softmax(functional_call(model, params, (x,)), dim=1)


EVAL_BLOCK = 4096
"""Rows per block of :func:`argmax_sharded` (blocks are what threads share; a row's block never depends
on how many threads there are)."""


@torch.no_grad()
def argmax_sharded(
    model: nn.Module, params: Params, x: torch.Tensor, block: int = EVAL_BLOCK
) -> torch.Tensor:
    """Predicted classes of ``params`` on ``x`` (many rows: every device's data), blocks on threads.

    The MLP's forward pass is written out (no module state touched, so blocks run on parallel
    threads, :mod:`twin.parallel`); other models run ``functional_call`` in the same blocks on this
    thread. Fixed blocks keep every row's arithmetic the same however many threads there are.
    """
    n = int(x.shape[0])
    layers = _mlp_layers(model, params)
    if layers is None:
        return (
            torch.cat(
                [
                    functional_call(model, params, (x[i : i + block],)).argmax(dim=1)
                    for i in range(0, n, block)
                ]
            )
            if n
            else torch.zeros(0, dtype=torch.long)
        )
    weights = [(params[f"{layer}.weight"], params[f"{layer}.bias"]) for layer in layers]
    n_blocks = -(-n // block)

    def blocks(first: int, last: int) -> torch.Tensor:
        out = []
        for i in range(first, last):
            a = x[i * block : (i + 1) * block]
            for j, (w, b) in enumerate(weights):
                a = nn.functional.linear(a, w, b)
                if j < len(weights) - 1:
                    a = a.clamp_min_(0.0)
            out.append(a.argmax(dim=1))
        return torch.cat(out)

    parts = map_shards(blocks, shard_bounds(n_blocks, min_shard=1))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


INFERENCE_BLOCK = 32


@torch.no_grad()
def batch_invariant_logits(
    model: nn.Module, params: Params, x: torch.Tensor, block: int = INFERENCE_BLOCK
) -> torch.Tensor:
    """Logits of ``x`` computed in zero-padded blocks of ``block`` rows.

    A matrix product's rounding depends on how many rows it has (BLAS picks other kernels for small
    batches), so a sample's result would depend on which other samples share its batch. Fixed-size
    blocks make each row's result independent of the batch it came in — the same whether one process
    holds every device or workers hold a share each.
    """
    n = x.shape[0]
    pad = (-n) % block
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    out = torch.cat(
        [functional_call(model, params, (x[i : i + block],)) for i in range(0, x.shape[0], block)]
    )
    return out[:n]
