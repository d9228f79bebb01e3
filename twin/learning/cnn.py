"""A small convolutional classifier of 1×32×32 images that trains in vmap cohorts and splits by block.

:class:`SmallCNN` is an ``nn.Sequential`` of five blocks (three conv → ReLU → max-pool stages, a hidden
linear layer, the class head). It takes **flat** inputs ``(B, 1024)`` and unflattens them in its first
block, so a task's samples stay 2-D tensors like every other task's (``TaskData.in_features``, the
cohort's padding, the wire format of a window) while the model sees images. Because it is an
``nn.Sequential``, :mod:`twin.split_profile` profiles it block by block (split points 0-5), and
:func:`run_blocks` runs any range of blocks with given parameters — the robot's head and the edge's tail
of a split inference.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call

from twin.learning.cohort import INFERENCE_BLOCK, Params

IMAGE_SIDE = 32
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE


class SmallCNN(nn.Sequential):
    """Three conv stages (3×3, padding 1, ReLU, 2×2 max-pool), a hidden layer and the class head."""

    def __init__(
        self, n_classes: int, channels: tuple[int, int, int] = (8, 16, 32), hidden: int = 32
    ) -> None:
        if len(channels) != 3 or min(channels) < 1 or hidden < 1 or n_classes < 2:
            raise ValueError(
                f"SmallCNN needs 3 positive channel counts, hidden >= 1 and >= 2 classes, got "
                f"channels={channels}, hidden={hidden}, n_classes={n_classes}"
            )
        c1, c2, c3 = channels
        side = IMAGE_SIDE // 8
        super().__init__(
            OrderedDict(
                [
                    ("conv1", _stage(1, c1, unflatten=True)),
                    ("conv2", _stage(c1, c2)),
                    ("conv3", _stage(c2, c3)),
                    ("hidden", nn.Sequential(nn.Flatten(), nn.Linear(c3 * side * side, hidden), nn.ReLU())),
                    ("head", nn.Linear(hidden, n_classes)),
                ]
            )
        )
        self.channels = channels
        self.hidden_units = hidden
        self.n_classes = n_classes


def _stage(c_in: int, c_out: int, *, unflatten: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE))] if unflatten else []
    layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def init_cnn_params(model: nn.Module, generator: torch.Generator) -> Params:
    """Seeded initial parameters: He (Kaiming) uniform weights, zero biases.

    Weights are uniform in ±√(6/fan_in) with the full fan-in (``in × kh × kw`` for a conv), which keeps
    the activations' scale through the ReLU stages (He et al., 2015); with the smaller ±1/√fan_in the
    signal shrinks at every stage and plain SGD sits at chance for several rounds before it learns.
    """
    params: Params = {}
    for name, p in model.named_parameters():
        if p.ndim > 1:
            bound = math.sqrt(6.0 / math.prod(p.shape[1:]))
            params[name] = (torch.rand(p.shape, generator=generator) * 2 - 1) * bound
        else:
            params[name] = torch.zeros(p.shape)
    return params


def block_params(params: Params, block: str) -> Params:
    """The parameters of child ``block`` of a sequential model, with the block's prefix removed."""
    prefix = block + "."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


@torch.no_grad()
def run_blocks(
    model: nn.Sequential, params: Params, x: torch.Tensor, start: int, stop: int, block: int = INFERENCE_BLOCK
) -> torch.Tensor:
    """Children ``start..stop-1`` of ``model`` on ``x`` with ``params``, in zero-padded blocks of rows.

    Fixed-size row blocks make each sample's result independent of the batch it came in (see
    :func:`twin.learning.cohort.batch_invariant_logits`).
    """
    names = [name for name, _ in model.named_children()]
    if not 0 <= start <= stop <= len(names):
        raise ValueError(f"block range must satisfy 0 <= start <= stop <= {len(names)}, got {start}..{stop}")
    n = x.shape[0]
    pad = (-n) % block
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    chunks = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few 32-row blocks: more intra-op threads only add synchronisation
    try:
        for i in range(0, x.shape[0], block):
            out = x[i : i + block]
            for name in names[start:stop]:
                out = functional_call(getattr(model, name), block_params(params, name), (out,))
            chunks.append(out)
    finally:
        torch.set_num_threads(threads)
    return torch.cat(chunks)[:n]
