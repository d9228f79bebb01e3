"""Model compression (paper §2.4.8): prune and quantise a trained model, pick a variant per device.

From a trained model's parameters, :func:`make_variants` builds the **variants** the service offers:
every combination of magnitude **pruning** (the smallest-magnitude share of each weight matrix set to
zero) and weight **quantisation** (32-bit floats, or symmetric per-tensor int8: ``q = round(w / s)``,
``s = max|w| / 127``; the model then runs on the dequantised ``q · s``). Each variant's **accuracy is
measured** by the caller's evaluation of those parameters — nothing is assumed about the loss.

Its **wire form** (:func:`to_wire`) is what is stored and sent: each weight matrix dense, or — when that
is smaller — a presence bitmask (``{name}::mask``, uint8, bit ``i % 8`` of byte ``i // 8`` for entry ``i``
in row-major order) plus its non-zero values (``{name}::values``); int8 values carry their 32-bit scale
as ``{name}::scale`` (``{name}::values::scale`` when sparse), as the model codec names it; biases stay
32-bit. A variant's parameters are what a receiver rebuilds from those tensors as it decodes them
(:func:`from_wire`; ``transport`` in :func:`make_variants` lets the caller decode them with its real codec),
and its size is their bits until the caller replaces it with the payload it actually sent.

Its **work** per sample is the dense FLOPs times the weights' density (sparse kernels are assumed to skip
zeros), and int8 arithmetic runs ``int8_speedup`` times faster at ``int8_energy_ratio`` of the energy
per operation — both assumptions of this module (integer MACs cost several times less energy than
float ones, Horowitz, ISSCC 2014), stated in its config and reports.

:func:`choose_variant` picks, for one device, **the most accurate variant that fits the device**: it
must download over the device's link within ``max_download_s``, fit its model memory, and answer a
request of ``rows`` samples on its compute within ``max_inference_s``; ties go to the smaller. A weaker
link or a slower device so gets a smaller model. :func:`compression_report` is its QoAIS: accuracy lost,
share of devices served within budget, energy saved against the uncompressed model (model delivery +
inference: ``D/EE_comm + O/EE_UE``, SPEC §7). Pure: no bus, no I/O, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile
from twin.qoais import Indicator, ServiceReport, graded_indicators

Params = dict[str, torch.Tensor]
FLOAT_BITS = 32
INT8_BITS = 8
_INT8_MAX = 127


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """Which variants the service builds, and what int8 arithmetic is assumed to save."""

    sparsities: tuple[float, ...] = (0.0, 0.5, 0.8)
    """Shares of each weight matrix pruned (0: none)."""
    weight_bits: tuple[int, ...] = (32, 8)
    """Weight precisions built: 32 (float) and/or 8 (int8)."""
    max_accuracy_loss: float = 0.1
    """Variants losing more accuracy than this (absolute) against the original are not offered."""
    int8_speedup: float = 2.0
    """Assumption: how much faster a device runs int8 weights than float32 ones."""
    int8_energy_ratio: float = 0.25
    """Assumption: energy of an int8 operation relative to a float32 one."""

    def __post_init__(self) -> None:
        if not self.sparsities or not self.weight_bits:
            raise ValueError("compression needs at least one sparsity and one weight precision")
        for s in self.sparsities:
            check_range("compression", "sparsities", s, 0.0, 0.99)
        if any(b not in (FLOAT_BITS, INT8_BITS) for b in self.weight_bits):
            raise ValueError(f"compression.weight_bits must be 32 and/or 8, got {self.weight_bits}")
        check_range("compression", "max_accuracy_loss", self.max_accuracy_loss, 0.0, 1.0)
        check_positive("compression", int8_speedup=self.int8_speedup)
        check_range("compression", "int8_energy_ratio", self.int8_energy_ratio, 0.01, 1.0)


@dataclass(frozen=True, slots=True)
class CompressionTargets:
    """QoAIS targets of the compression service."""

    max_accuracy_loss: float = 0.05
    """Mean accuracy lost by the devices' models against the original, at most."""
    within_budget: float = 0.9
    """Share of devices whose model fits their link, memory and compute budget, at least."""
    energy_saved: float = 0.2
    """Share of model delivery + inference energy saved against the uncompressed model, at least."""
    privacy_level: int = 4
    """Target data privacy level, 1 (low) … 5 (high), at least."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high), at least."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Control mode the service must offer (it offers 'full' and 'partial')."""

    def __post_init__(self) -> None:
        check_range("compression_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("compression_qoais", "security_level", self.security_level, 1, 5)
        check_range("compression_qoais", "max_accuracy_loss", self.max_accuracy_loss, 0.0, 1.0)
        check_range("compression_qoais", "within_budget", self.within_budget, 0.0, 1.0)
        check_range("compression_qoais", "energy_saved", self.energy_saved, -1.0, 1.0)


def is_weight(name: str, tensor: torch.Tensor) -> bool:
    """Whether a parameter is a weight matrix (pruned and quantised) rather than a bias."""
    return tensor.dim() >= 2 and not name.endswith("bias")


def prune_magnitude(params: Mapping[str, torch.Tensor], sparsity: float) -> Params:
    """Copy of ``params`` with the ``sparsity`` share of smallest-magnitude entries of each weight zeroed."""
    out: Params = {}
    for name, tensor in params.items():
        pruned = tensor.detach().clone()
        n_zero = int(math.floor(sparsity * pruned.numel()))
        if is_weight(name, pruned) and n_zero > 0:
            order = torch.argsort(pruned.abs().flatten(), stable=True)
            pruned.view(-1)[order[:n_zero]] = 0.0
        out[name] = pruned
    return out


def _int8(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-tensor int8 of ``tensor``: ``q = round(w / s)``, ``s = max|w| / 127`` (fp32, shape 1)."""
    t = tensor.detach().to("cpu", torch.float32)
    peak = t.abs().max() if t.numel() else torch.zeros(())
    scale = (peak / _INT8_MAX if float(peak) > 0 else torch.ones(())).reshape(1)
    return torch.clamp(torch.round(t / scale), -_INT8_MAX, _INT8_MAX).to(torch.int8), scale


def quantise_int8(params: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Symmetric per-tensor int8 of each weight (biases untouched): the int8 tensors and their scales."""
    q: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    for name, tensor in params.items():
        if is_weight(name, tensor):
            q[name], scale = _int8(tensor)
            scales[name] = float(scale)
    return q, scales


MASK_SUFFIX = "::mask"
"""A sparse weight's presence bitmask travels as ``{name}::mask`` (uint8, little-endian bit order)."""
VALUES_SUFFIX = "::values"
"""A sparse weight's non-zero values travel as ``{name}::values`` (row-major order)."""
SCALE_SUFFIX = "::scale"
"""An int8 tensor's scale travels beside it as ``{tensor}::scale`` (the model codec's convention)."""


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A flat bool tensor as bytes: bit ``i % 8`` (least significant first) of byte ``i // 8``."""
    padded = torch.cat([mask, mask.new_zeros((-mask.numel()) % 8)]).reshape(-1, 8).to(torch.int32)
    return (padded << torch.arange(8, dtype=torch.int32)).sum(dim=1).to(torch.uint8)


def _unpack_bits(packed: torch.Tensor) -> torch.Tensor:
    """The flat bool tensor :func:`_pack_bits` packed (its padding included)."""
    bits = (packed.to(torch.int32).reshape(-1, 1) >> torch.arange(8, dtype=torch.int32)) & 1
    return bits.reshape(-1).bool()


def to_wire(params: Mapping[str, torch.Tensor], weight_bits: int) -> dict[str, torch.Tensor]:
    """The tensors that carry ``params`` with ``weight_bits``-bit weights (see the module docstring).

    Each weight travels dense or as bitmask + non-zero values, whichever has fewer bytes; int8 weights
    with their scale; biases as 32-bit floats.
    """
    if weight_bits not in (FLOAT_BITS, INT8_BITS):
        raise ValueError(f"weight_bits must be 32 or 8, got {weight_bits}")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in params.items():
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        if not is_weight(name, t):
            out[name] = t
            continue
        values, scale = _int8(t) if weight_bits == INT8_BITS else (t, None)
        flat = values.reshape(-1)
        present = flat != 0
        width = weight_bits // 8
        if math.ceil(flat.numel() / 8) + width * int(present.sum()) < width * flat.numel():
            out[name + MASK_SUFFIX] = _pack_bits(present)
            out[name + VALUES_SUFFIX] = flat[present].clone()
            stem = name + VALUES_SUFFIX
        else:
            out[name] = values
            stem = name
        if scale is not None:
            out[stem + SCALE_SUFFIX] = scale
    return out


def wire_bits(wire: Mapping[str, torch.Tensor]) -> int:
    """Bits of the wire tensors themselves (a payload adds its container's header)."""
    return sum(8 * t.numel() * t.element_size() for t in wire.values())


def received(wire: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wire tensors as a receiver decodes them: int8 × its scale, the rest as 32-bit floats.

    The model codec (``broker.codec.decode_model``) does exactly this; use it where the bytes travel.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in wire.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if tensor.dtype == torch.int8:
            out[name] = tensor.to(torch.float32) * wire[name + SCALE_SUFFIX].to(torch.float32).reshape(())
        else:
            out[name] = tensor.to(torch.float32)
    return out


def from_wire(tensors: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor]) -> Params:
    """The dense parameters a receiver computes with, from the tensors it decoded (see :func:`received`).

    ``template`` names every parameter and its shape. Raises ``ValueError`` (naming the tensor) for a
    missing, unexpected or misshapen tensor, a bitmask that is not bytes or whose set bits (padding
    included) do not match the non-zero values.
    """
    out: Params = {}
    used: set[str] = set()
    for name, ref in template.items():
        shape = tuple(ref.shape)
        n = math.prod(shape)
        if name in tensors:
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, not {shape}")
            out[name] = tensors[name].to(torch.float32).clone()
            used.add(name)
            continue
        mask_name, values_name = name + MASK_SUFFIX, name + VALUES_SUFFIX
        if mask_name not in tensors or values_name not in tensors:
            raise ValueError(f"no tensor carries {name!r}")
        mask, values = tensors[mask_name].reshape(-1).to(torch.float64), tensors[values_name]
        if mask.numel() != math.ceil(n / 8) or values.dim() != 1:
            raise ValueError(f"sparse {name!r}: {mask.numel()} mask bytes for {n} entries")
        if not bool(((mask == mask.round()) & (mask >= 0) & (mask <= 255)).all()):
            raise ValueError(f"sparse {name!r}: its mask is not bytes")
        present = _unpack_bits(mask.to(torch.uint8))
        if bool(present[n:].any()) or int(present.sum()) != values.numel():
            raise ValueError(f"sparse {name!r}: mask bits do not match {values.numel()} values")
        dense = torch.zeros(n, dtype=torch.float32)
        dense[present[:n]] = values.to(torch.float32)
        out[name] = dense.reshape(shape)
        used |= {mask_name, values_name}
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"unexpected tensors {extra[:5]}")
    return out


def encoded_size_bits(params: Mapping[str, torch.Tensor], weight_bits: int) -> int:
    """Bits of the wire tensors of ``params`` (:func:`to_wire`): dense or bitmask + non-zeros, scales."""
    return wire_bits(to_wire(params, weight_bits))


def weight_density(params: Mapping[str, torch.Tensor]) -> float:
    """Share of non-zero weights (1 for a dense model)."""
    weights = [t for n, t in params.items() if is_weight(n, t)]
    total = sum(t.numel() for t in weights)
    return sum(int(torch.count_nonzero(t)) for t in weights) / total if total else 1.0


@dataclass(frozen=True, slots=True, eq=False)
class ModelVariant:
    """A compressed (or original) model: its parameters, measured accuracy, size and work."""

    name: str
    sparsity: float
    weight_bits: int
    params: Params = field(repr=False)
    """Parameters the device computes with: what it rebuilds from the wire tensors as it decodes them."""
    size_bits: int
    """Bits delivered to a device: the wire tensors', or the payload actually sent (the caller's)."""
    flops_per_sample: float
    """Operations per sample (dense FLOPs × weight density)."""
    accuracy: float
    """Measured on held-out data, with :attr:`params`."""
    speedup: float = 1.0
    """How much faster than float32 arithmetic the device runs it."""
    energy_ratio: float = 1.0
    """Energy per operation relative to float32."""
    wire: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    """The tensors that travel (:func:`to_wire`): int8 and bitmasks as they are, not as floats."""

    def inference_s(self, rows: int, compute: ComputeProfile) -> float:
        """Time to score ``rows`` samples on ``compute``: ``O / (F · speedup)``."""
        return rows * self.flops_per_sample / (compute.flops_per_s * self.speedup)

    def inference_j(self, rows: int, compute: ComputeProfile) -> float:
        """Energy to score ``rows`` samples on ``compute``: ``O · ratio / EE_UE``."""
        return rows * self.flops_per_sample * self.energy_ratio / compute.efficiency_flops_per_j


Transport = Callable[[str, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]
"""(variant name, wire tensors) → the tensors as a receiver decodes them from the bytes that travel."""


def make_variants(
    params: Mapping[str, torch.Tensor],
    *,
    flops_per_sample: float,
    evaluate: Callable[[Params], float],
    config: CompressionConfig,
    transport: Transport | None = None,
) -> tuple[ModelVariant, ...]:
    """Every pruning × precision variant of ``params``, accuracy measured, the original first.

    Each variant's parameters are rebuilt (:func:`from_wire`) from its wire tensors as ``transport``
    decodes them — the caller's codec; by default :func:`received`, what the model codec does — so the
    accuracy measured is that of the model a device computes with. Variants losing more than
    ``config.max_accuracy_loss`` against the original are left out.
    """
    decode = transport if transport is not None else lambda _name, wire: received(wire)
    template = {k: v.detach() for k, v in params.items()}
    variants: list[ModelVariant] = []
    for sparsity in sorted(set(config.sparsities)):
        pruned = prune_magnitude(params, sparsity)
        density = weight_density(pruned)
        for bits in sorted(set(config.weight_bits), reverse=True):
            int8 = bits == INT8_BITS
            name = ("int8" if int8 else "fp32") + (f"-pruned{round(100 * sparsity)}" if sparsity else "")
            wire = to_wire(pruned, bits)
            used = from_wire(decode(name, wire), template)
            variants.append(
                ModelVariant(
                    name=name,
                    sparsity=sparsity,
                    weight_bits=bits,
                    params=used,
                    size_bits=wire_bits(wire),
                    flops_per_sample=flops_per_sample * density,
                    accuracy=float(evaluate(used)),
                    speedup=config.int8_speedup if int8 else 1.0,
                    energy_ratio=config.int8_energy_ratio if int8 else 1.0,
                    wire=wire,
                )
            )
    original = next((v for v in variants if v.sparsity == 0 and v.weight_bits == FLOAT_BITS), variants[0])
    kept = [v for v in variants if original.accuracy - v.accuracy <= config.max_accuracy_loss]
    return (original, *(v for v in kept if v is not original))


@dataclass(frozen=True, slots=True)
class DeviceBudget:
    """What one device can take: its link, compute, memory and the time it may spend."""

    agent_id: str
    downlink_bps: float
    radio_power_w: float
    compute: ComputeProfile
    memory_bits: float
    """Memory the device gives to the model."""
    max_download_s: float
    """Longest acceptable model delivery over the device's link."""
    max_inference_s: float
    """Longest acceptable on-device answer to one request."""
    rows: int
    """Samples one request scores."""

    def __post_init__(self) -> None:
        check_positive(
            "device budget",
            radio_power_w=self.radio_power_w,
            memory_bits=self.memory_bits,
            max_download_s=self.max_download_s,
            max_inference_s=self.max_inference_s,
            rows=self.rows,
        )
        if self.downlink_bps < 0:
            raise ValueError(f"downlink_bps must be >= 0, got {self.downlink_bps}")

    def download_s(self, variant: ModelVariant) -> float:
        """Delivery time of ``variant`` over the link: ``D / R`` (infinite without a link)."""
        return variant.size_bits / self.downlink_bps if self.downlink_bps > 0 else math.inf

    def download_j(self, variant: ModelVariant) -> float:
        """Delivery energy on the device's radio: ``D / EE_comm``, ``EE_comm = R / P``."""
        return self.download_s(variant) * self.radio_power_w

    def fits(self, variant: ModelVariant) -> bool:
        """Whether ``variant`` meets every budget of the device."""
        return (
            self.download_s(variant) <= self.max_download_s
            and variant.size_bits <= self.memory_bits
            and variant.inference_s(self.rows, self.compute) <= self.max_inference_s
        )


@dataclass(frozen=True, slots=True)
class CompressionChoice:
    """The variant chosen for one device, and what it costs against the original model."""

    agent_id: str
    variant: ModelVariant
    fits: bool
    """False: no variant fits; the smallest is chosen and the device is over budget."""
    download_s: float
    download_j: float
    inference_s: float
    inference_j: float
    accuracy_loss: float
    original_j: float
    """Delivery + one request's inference energy of the uncompressed model on this device."""

    @property
    def energy_j(self) -> float:
        """Delivery + one request's inference energy of the chosen variant."""
        return self.download_j + self.inference_j

    def record(self) -> dict[str, float | str | bool]:
        """Flat record of the choice."""
        return {
            "agent_id": self.agent_id,
            "variant": self.variant.name,
            "weight_bits": float(self.variant.weight_bits),
            "sparsity": self.variant.sparsity,
            "size_bits": float(self.variant.size_bits),
            "accuracy": self.variant.accuracy,
            "accuracy_loss": self.accuracy_loss,
            "fits": self.fits,
            "download_s": self.download_s,
            "inference_s": self.inference_s,
            "energy_j": self.energy_j,
            "original_energy_j": self.original_j,
        }


def choose_variant(variants: Sequence[ModelVariant], budget: DeviceBudget) -> CompressionChoice:
    """The most accurate variant that fits ``budget`` (ties: the smaller); the smallest if none fits."""
    if not variants:
        raise ValueError("choose_variant needs at least one variant")
    original = variants[0]
    fitting = [v for v in variants if budget.fits(v)]
    if fitting:
        chosen = min(fitting, key=lambda v: (-v.accuracy, v.size_bits, v.name))
    else:
        chosen = min(variants, key=lambda v: (v.size_bits, -v.accuracy, v.name))
    return CompressionChoice(
        agent_id=budget.agent_id,
        variant=chosen,
        fits=bool(fitting),
        download_s=budget.download_s(chosen),
        download_j=budget.download_j(chosen),
        inference_s=chosen.inference_s(budget.rows, budget.compute),
        inference_j=chosen.inference_j(budget.rows, budget.compute),
        accuracy_loss=original.accuracy - chosen.accuracy,
        original_j=budget.download_j(original) + original.inference_j(budget.rows, budget.compute),
    )


def compression_summary(
    variants: Sequence[ModelVariant], choices: Sequence[CompressionChoice]
) -> dict[str, float]:
    """KPIs of the compression service (empty before any choice)."""
    if not choices:
        return {}
    finite = [c for c in choices if math.isfinite(c.energy_j) and math.isfinite(c.original_j)]
    original_j = sum(c.original_j for c in finite)
    return {
        "devices": float(len(choices)),
        "variants": float(len(variants)),
        "original_bits": float(variants[0].size_bits),
        "mean_bits": sum(c.variant.size_bits for c in choices) / len(choices),
        "accuracy_loss_mean": sum(c.accuracy_loss for c in choices) / len(choices),
        "within_budget": sum(c.fits for c in choices) / len(choices),
        "energy_saved_share": 1.0 - sum(c.energy_j for c in finite) / original_j if original_j > 0 else 0.0,
        "compressed_devices": float(sum(c.variant is not variants[0] for c in choices)),
    }


def compression_report(
    service: str,
    variants: Sequence[ModelVariant],
    choices: Sequence[CompressionChoice],
    targets: CompressionTargets,
    config: CompressionConfig,
    *,
    tls: bool,
    authenticated: bool,
) -> ServiceReport:
    """QoAIS of the compression service: accuracy lost, devices within budget, energy saved."""
    summary = compression_summary(variants, choices)
    if not summary:
        return ServiceReport(service, "model compression", (), ("no device served: nothing to assess",))
    indicators = (
        Indicator(
            "performance",
            "accuracy_loss_mean",
            summary["accuracy_loss_mean"],
            targets.max_accuracy_loss,
            "",
            "max",
            f"original accuracy {variants[0].accuracy:.3f}, measured per variant on held-out data",
        ),
        Indicator(
            "performance",
            "devices_within_budget",
            summary["within_budget"],
            targets.within_budget,
            "",
            "min",
            "model delivery time over the device's link, memory and on-device answer time",
        ),
        Indicator(
            "overhead",
            "energy_saved_share",
            summary["energy_saved_share"],
            targets.energy_saved,
            "",
            "min",
            f"delivery + inference energy vs the fp32 model (int8 assumed {config.int8_speedup:g}× faster, "
            f"{config.int8_energy_ratio:g}× the energy per operation)",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=False,
            privacy_detail="only models travel to the devices",
        ),
    )
    notes = tuple(
        f"{v.name}: {v.size_bits} bit ({v.size_bits / variants[0].size_bits:.0%}), accuracy {v.accuracy:.3f} "
        f"(lost {variants[0].accuracy - v.accuracy:+.3f}), {v.flops_per_sample:.0f} FLOP/sample, "
        f"chosen by {sum(c.variant is v for c in choices)} device(s)"
        for v in variants
    )
    return ServiceReport(service, "model compression", indicators, notes)
