"""Data services (3.2.3.3): completeness and redundancy (mutual information, near-duplicates)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from twin.kpi.common import BoolArray, FloatArray, KpiInputError


def data_completeness(n_lossless: int, n_total: int) -> float:
    """Service completeness ``r = N_lossless / N_total`` (3.2.3.3)."""
    if n_total <= 0 or not 0 <= n_lossless <= n_total:
        raise KpiInputError(f"need 0 <= n_lossless <= n_total and n_total > 0, got {n_lossless} of {n_total}")
    return n_lossless / n_total


def lossless_mask(samples: npt.ArrayLike) -> BoolArray:
    """Which samples (rows) are lossless: no missing (NaN) or infinite value."""
    x = np.asarray(samples, dtype=np.float64)
    return np.all(np.isfinite(x.reshape(x.shape[0], -1)), axis=1)


def _samples_matrix(samples: npt.ArrayLike, minimum: int) -> FloatArray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < minimum or not np.all(np.isfinite(x)):
        raise KpiInputError(
            f"samples must be a finite (N, d) array with N >= {minimum}, got shape {x.shape}"
            + ("" if np.all(np.isfinite(x)) else " with non-finite values")
        )
    return x


def mutual_information_redundancy_bits(samples: npt.ArrayLike, *, n_bins: int = 16) -> float:
    """Redundancy as the mean pairwise mutual information between samples, in bits (3.2.3.3).

    Estimator: every value is discretised into ``n_bins`` equal-width bins spanning the whole data set
    (one alphabet for all samples); for each unordered pair of samples ``(x_i, x_j)`` the ``d`` feature
    positions are the draws of the joint variable, and ``I(x_i; x_j)`` is the plug-in (histogram) estimate
    ``sum p(a, b) log2(p(a, b) / (p(a) p(b)))``. The result is the mean over the ``N (N - 1) / 2`` pairs
    (the paper's normalisation ``1 / (2 N)`` over ordered pairs grows with ``N``; the SPEC asks for the
    mean). The plug-in estimate is biased upwards by about ``(n_bins - 1)^2 / (2 d ln 2)`` bits for
    independent samples, so compare values computed with the same ``n_bins`` and ``d``. Cost is
    ``O(N^2 (d + n_bins^2))`` time, ``O(N n_bins^2)`` memory.

    Args:
        samples: ``(N, d)`` array, one sample per row, N >= 2.
        n_bins: number of bins, >= 2.

    """
    x = _samples_matrix(samples, minimum=2)
    if n_bins < 2:
        raise KpiInputError(f"n_bins must be >= 2, got {n_bins}")
    n, d = x.shape
    low, high = float(x.min()), float(x.max())
    span = high - low if high > low else 1.0
    codes = np.minimum(((x - low) / span * n_bins).astype(np.int64), n_bins - 1)
    total_bits = 0.0
    for i in range(n - 1):
        others = codes[i + 1 :]
        pairs = others.shape[0]
        joint_index = np.arange(pairs)[:, None] * n_bins * n_bins + codes[i][None, :] * n_bins + others
        joint = (
            np.bincount(joint_index.ravel(), minlength=pairs * n_bins * n_bins).reshape(pairs, n_bins, n_bins)
            / d
        )
        expected = joint.sum(axis=2)[:, :, None] * joint.sum(axis=1)[:, None, :]
        nonzero = joint > 0
        total_bits += float(np.sum(joint[nonzero] * np.log2(joint[nonzero] / expected[nonzero])))
    return total_bits / (n * (n - 1) / 2)


def near_duplicate_share(samples: npt.ArrayLike, *, threshold: float = 0.99, chunk_rows: int = 1024) -> float:
    """Redundancy as the share of samples with a near-duplicate: cosine similarity >= ``threshold`` (3.2.3.3).

    The paper writes ``cos <= eps``; a near-duplicate has a cosine close to 1, so this uses ``>=``
    (deliberate deviation, SPEC §7).

    Args:
        samples: ``(N, d)`` array, one sample per row, N >= 1, no all-zero row (its cosine is undefined).
        threshold: ``eps`` in [-1, 1].
        chunk_rows: rows compared at a time (bounds memory to ``chunk_rows * N`` floats).

    """
    x = _samples_matrix(samples, minimum=1)
    if not -1.0 <= threshold <= 1.0:
        raise KpiInputError(f"threshold must be in [-1, 1], got {threshold}")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise KpiInputError(
            f"samples {np.flatnonzero(norms == 0)[:3].tolist()} are all-zero: cosine is undefined"
        )
    unit = x / norms[:, None]
    has_duplicate = np.zeros(x.shape[0], dtype=bool)
    for start in range(0, x.shape[0], chunk_rows):
        cosine = unit[start : start + chunk_rows] @ unit.T
        rows = np.arange(cosine.shape[0])
        cosine[rows, start + rows] = -np.inf
        has_duplicate[start : start + chunk_rows] = np.any(cosine >= threshold, axis=1)
    return float(has_duplicate.mean())
