"""World of the ``beam-orchestration`` scenario: crowds over several cells, a grid, beams and their radio.

Users live in a square area served by ``cells_x × cells_y`` base stations, one per square block of
the grid (its *site*). Static users stay near their home (a small jitter); dynamic users wander near
theirs and join **gatherings** (crowd events that start at random places and times, last a while and
end), walking towards the gathering at a limited speed and back home when it ends. The share of
dynamic users is the scenario's setting (paper §3.1.4: 10 %, 50 %, 100 %).

Per window the users are counted per grid cell; the value to predict is the next window's
**occupancy class** of every grid cell (``np.digitize`` of the count by ``class_edges``). A predictor
sees the counts of a grid cell's neighbourhood over the last windows, as far as its place can see
them: the cloud sees every grid cell (all sites uploaded their data), a site sees only its own block.

Each base station steers its transmit power over a codebook of beams (TR 38.901 Table 7.3-1 element
pattern ``G − min(12 (φ/φ3dB)², A_m)``) in proportion to the users it expects in each beam's sector;
the resulting RSRP and SINR of the real users come from the project's radio model (TR 38.901 path
loss, :mod:`twin.radio`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from twin.config import check_positive, check_range
from twin.radio import (
    RadioConfig,
    db_to_linear,
    downlink_sinr_db,
    geometry,
    linear_to_db,
    path_loss_db,
    thermal_noise_dbm,
)
from twin.radio.pathloss import los_probability

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RAW_RECORD = np.dtype([("user_id", "<u4"), ("window", "<u4"), ("x_m", "<f4"), ("y_m", "<f4")])
"""One user's position report in one window, as a site stores and uploads it (16 bytes)."""


def _small_cell() -> RadioConfig:
    return RadioConfig(scenario="UMi", tx_power_dbm=44.0)


@dataclass(frozen=True, slots=True)
class AreaConfig:
    """Cells, grid and beams."""

    cells_x: int = 2
    """Base stations (sites) along x; each serves a square block of the grid."""
    cells_y: int = 2
    """Base stations (sites) along y."""
    grid_per_cell: int = 8
    """Grid cells along one side of a site's block."""
    grid_m: float = 25.0
    """Side of one grid cell."""
    beams: int = 8
    """Beams in each base station's codebook, evenly spread in azimuth."""
    beam_width_deg: float = 45.0
    """3 dB width of one beam (TR 38.901 Table 7.3-1 φ3dB)."""
    beam_gain_db: float = 8.0
    """Peak gain of one beam."""
    beam_backoff_db: float = 20.0
    """Front-to-back attenuation of one beam (A_m)."""
    beam_focus: float = 0.8
    """Share of a base station's power steered by the expected users; the rest is spread evenly."""
    radio: RadioConfig = field(default_factory=_small_cell)

    def __post_init__(self) -> None:
        check_positive(
            "area",
            cells_x=self.cells_x,
            cells_y=self.cells_y,
            grid_per_cell=self.grid_per_cell,
            grid_m=self.grid_m,
            beams=self.beams,
            beam_width_deg=self.beam_width_deg,
            beam_backoff_db=self.beam_backoff_db,
        )
        check_range("area", "beam_focus", self.beam_focus, 0.0, 1.0)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Grid cells (rows along y, columns along x)."""
        return self.cells_y * self.grid_per_cell, self.cells_x * self.grid_per_cell

    @property
    def sites(self) -> int:
        """Number of base stations."""
        return self.cells_x * self.cells_y

    @property
    def size_m(self) -> tuple[float, float]:
        """Width (x) and height (y) of the area."""
        rows, cols = self.grid_shape
        return cols * self.grid_m, rows * self.grid_m


@dataclass(frozen=True, slots=True)
class CrowdConfig:
    """Users, windows and crowd dynamics."""

    users: int = 500
    """Users in the area."""
    windows: int = 200
    """Observation windows simulated."""
    train_windows: int = 140
    """Windows whose data trains the predictors; the later ones evaluate them."""
    history_windows: int = 4
    """Past windows a prediction looks at."""
    neighbourhood: int = 2
    """Grid cells on each side of a grid cell that its prediction looks at."""
    gathering_rate: float = 0.15
    """Gatherings starting per window (Poisson mean)."""
    gathering_min_windows: int = 8
    """Shortest gathering."""
    gathering_max_windows: int = 20
    """Longest gathering."""
    join_probability: float = 0.35
    """Probability that a free dynamic user joins a gathering when it starts."""
    walk_m: float = 35.0
    """Distance a dynamic user walks in one window towards its destination."""
    crowd_spread_m: float = 12.0
    """Spread of a gathering's users around its centre."""
    wander_m: float = 8.0
    """Random step of a dynamic user per window."""
    static_jitter_m: float = 3.0
    """Position jitter of a static user around its home."""
    class_edges: tuple[int, ...] = (1, 3, 6)
    """Users per grid cell at which the occupancy class steps up (0 users: class 0)."""

    def __post_init__(self) -> None:
        check_positive(
            "crowd",
            users=self.users,
            windows=self.windows,
            train_windows=self.train_windows,
            history_windows=self.history_windows,
            gathering_min_windows=self.gathering_min_windows,
            walk_m=self.walk_m,
            crowd_spread_m=self.crowd_spread_m,
        )
        if self.neighbourhood < 0 or self.gathering_rate < 0 or self.wander_m < 0 or self.static_jitter_m < 0:
            raise ValueError("crowd.neighbourhood, gathering_rate, wander_m and static_jitter_m must be >= 0")
        check_range("crowd", "join_probability", self.join_probability, 0.0, 1.0)
        if self.gathering_max_windows < self.gathering_min_windows:
            raise ValueError(
                f"crowd.gathering_max_windows ({self.gathering_max_windows}) must be >= "
                f"gathering_min_windows ({self.gathering_min_windows})"
            )
        if not self.history_windows < self.train_windows < self.windows - 1:
            raise ValueError(
                "crowd windows must satisfy history_windows < train_windows < windows - 1, got "
                f"{self.history_windows}, {self.train_windows}, {self.windows}"
            )
        if (
            not self.class_edges
            or list(self.class_edges) != sorted(set(self.class_edges))
            or self.class_edges[0] < 1
        ):
            raise ValueError(f"crowd.class_edges must be increasing integers >= 1, got {self.class_edges}")

    @property
    def n_classes(self) -> int:
        """Occupancy classes."""
        return len(self.class_edges) + 1


def simulate_positions(
    area: AreaConfig, crowd: CrowdConfig, dynamic_share: float, rng: np.random.Generator
) -> FloatArray:
    """Positions (windows, users, 2) in metres of static and dynamic users as crowds gather and disperse."""
    check_range("simulate_positions", "dynamic_share", dynamic_share, 0.0, 1.0)
    width, height = area.size_m
    n = crowd.users
    home = rng.uniform((0.0, 0.0), (width, height), size=(n, 2))
    dynamic = np.zeros(n, dtype=bool)
    dynamic[rng.permutation(n)[: round(dynamic_share * n)]] = True
    joined = np.full(n, -1)
    offset = np.zeros((n, 2))
    centres: list[FloatArray] = []
    ends: list[int] = []
    pos = home.copy()
    out = np.empty((crowd.windows, n, 2))
    margin = crowd.crowd_spread_m
    for t in range(crowd.windows):
        if ends:
            over = (joined >= 0) & (np.asarray(ends)[np.maximum(joined, 0)] <= t)
            joined[over] = -1
        for _ in range(rng.poisson(crowd.gathering_rate)):
            centres.append(rng.uniform((margin, margin), (width - margin, height - margin)))
            ends.append(t + int(rng.integers(crowd.gathering_min_windows, crowd.gathering_max_windows + 1)))
            joins = dynamic & (joined < 0) & (rng.random(n) < crowd.join_probability)
            joined[joins] = len(centres) - 1
            offset[joins] = rng.normal(0.0, crowd.crowd_spread_m, size=(int(joins.sum()), 2))
        target = home.copy()
        if centres:
            busy = joined >= 0
            target[busy] = np.asarray(centres)[joined[busy]] + offset[busy]
        step = target - pos
        dist = np.linalg.norm(step, axis=1, keepdims=True)
        walk = step * np.minimum(1.0, crowd.walk_m / np.maximum(dist, 1e-9))
        wander = rng.normal(0.0, crowd.wander_m, size=(n, 2))
        jitter = rng.normal(0.0, crowd.static_jitter_m, size=(n, 2))
        pos = np.where(dynamic[:, None], pos + walk + wander, home + jitter)
        pos = np.clip(pos, 0.0, (width - 1e-6, height - 1e-6))
        out[t] = pos
    return out


def grid_index(xy: FloatArray, area: AreaConfig) -> tuple[IntArray, IntArray]:
    """Grid row and column of positions (..., 2)."""
    rows, cols = area.grid_shape
    col = np.clip((xy[..., 0] // area.grid_m).astype(np.int64), 0, cols - 1)
    row = np.clip((xy[..., 1] // area.grid_m).astype(np.int64), 0, rows - 1)
    return row, col


def grid_counts(positions: FloatArray, area: AreaConfig) -> IntArray:
    """Users per grid cell and window (windows, rows, cols)."""
    rows, cols = area.grid_shape
    windows = positions.shape[0]
    row, col = grid_index(positions, area)
    flat = (np.arange(windows)[:, None] * rows + row) * cols + col
    return np.bincount(flat.ravel(), minlength=windows * rows * cols).reshape(windows, rows, cols)


def occupancy_class(counts: npt.ArrayLike, class_edges: tuple[int, ...]) -> IntArray:
    """Occupancy class of user counts: how many of ``class_edges`` the count reaches."""
    return np.digitize(np.asarray(counts), np.asarray(class_edges)).astype(np.int64)


def prediction_accuracy(predicted: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Paper §3.1.4.1: grid cells whose predicted value equals the true one, over all grid cells."""
    p, t = np.asarray(predicted), np.asarray(true)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"predicted {p.shape} and true {t.shape} must be the same non-empty grid")
    return float(np.mean(p == t))


def site_of_grid(area: AreaConfig) -> IntArray:
    """Index of the site (base station) whose block holds each grid cell (rows, cols)."""
    rows, cols = area.grid_shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (r // area.grid_per_cell) * area.cells_x + c // area.grid_per_cell


def site_positions(area: AreaConfig) -> FloatArray:
    """Base-station positions (sites, 2): the centre of each site's block."""
    block = area.grid_per_cell * area.grid_m
    return np.array(
        [((i % area.cells_x + 0.5) * block, (i // area.cells_x + 0.5) * block) for i in range(area.sites)]
    )


def grid_centres(area: AreaConfig) -> FloatArray:
    """Centres of the grid cells (rows, cols, 2)."""
    rows, cols = area.grid_shape
    y, x = np.meshgrid(
        (np.arange(rows) + 0.5) * area.grid_m, (np.arange(cols) + 0.5) * area.grid_m, indexing="ij"
    )
    return np.stack([x, y], axis=-1)


def features(counts: IntArray, windows: IntArray, visible: BoolArray, crowd: CrowdConfig) -> FloatArray:
    """Inputs of the predictions made at ``windows``: for every grid cell, its neighbourhood's counts.

    Args:
        counts: users per grid cell (all windows, rows, cols).
        windows: the windows at which predictions are made (of the next window); each needs
            ``history_windows`` windows up to and including it.
        visible: the grid cells the predicting place sees (rows, cols); unseen ones read 0.
        crowd: history length and neighbourhood size.

    Returns:
        (len(windows), rows, cols, features): ``log1p`` counts of the ``(2r+1)²`` neighbourhood over the
        last ``history_windows`` windows (latest first), then the neighbourhood's visibility (0/1).
    """
    r = crowd.neighbourhood
    side = 2 * r + 1
    seen = np.log1p(counts * visible[None])
    padded = np.pad(seen, ((0, 0), (r, r), (r, r)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(1, 2))
    rows, cols = visible.shape
    history = [
        patches[windows - lag].reshape(len(windows), rows, cols, side * side)
        for lag in range(crowd.history_windows)
    ]
    vis = np.lib.stride_tricks.sliding_window_view(np.pad(visible, r), (side, side)).reshape(
        rows, cols, side * side
    )
    vis_all = np.broadcast_to(vis.astype(np.float64), (len(windows), rows, cols, side * side))
    return np.concatenate([*history, vis_all], axis=-1)


def raw_records(positions: FloatArray, window: int, area: AreaConfig) -> list[npt.NDArray[np.void]]:
    """Each site's raw position reports of one window (the users inside its block), as stored and sent."""
    row, col = grid_index(positions[window], area)
    site = site_of_grid(area)[row, col]
    out = []
    for s in range(area.sites):
        users = np.flatnonzero(site == s)
        records = np.zeros(len(users), dtype=RAW_RECORD)
        records["user_id"] = users
        records["window"] = window
        records["x_m"] = positions[window, users, 0]
        records["y_m"] = positions[window, users, 1]
        out.append(records)
    return out


def beam_gain_db(ue_xy: FloatArray, weights: FloatArray, area: AreaConfig) -> FloatArray:
    """Gain (UEs, sites) in dB of each base station's weighted beams towards each UE.

    ``weights`` (sites, beams) are power shares summing to 1 per base station; a UE in direction φ sees
    ``Σ_k w_k · 10^(A_k(φ)/10)`` with ``A_k(φ) = G − min(12 ((φ − φ_k)/φ3dB)², A_m)``.
    """
    bs = site_positions(area)
    delta = ue_xy[:, None, :] - bs[None, :, :]
    azimuth = np.degrees(np.arctan2(delta[..., 1], delta[..., 0]))
    pointing = np.arange(area.beams) * 360.0 / area.beams
    off = (azimuth[..., None] - pointing + 180.0) % 360.0 - 180.0
    pattern = area.beam_gain_db - np.minimum(12.0 * (off / area.beam_width_deg) ** 2, area.beam_backoff_db)
    return linear_to_db(np.einsum("nmk,mk->nm", db_to_linear(pattern), weights))


def beam_weights(expected_users: FloatArray, area: AreaConfig) -> FloatArray:
    """Power shares (sites, beams): ``(1−focus)/K`` each plus ``focus`` × the expected users per beam sector.

    Each base station looks at the grid cells of its own block and assigns each to the beam pointing
    closest to it; with no user expected it spreads its power evenly.
    """
    site = site_of_grid(area)
    bs = site_positions(area)
    centres = grid_centres(area)
    delta = centres - bs[site]
    azimuth = np.degrees(np.arctan2(delta[..., 1], delta[..., 0])) % 360.0
    beam = np.rint(azimuth / (360.0 / area.beams)).astype(np.int64) % area.beams
    per_beam = np.zeros((area.sites, area.beams))
    np.add.at(per_beam, (site.ravel(), beam.ravel()), np.asarray(expected_users, dtype=np.float64).ravel())
    total = per_beam.sum(axis=1, keepdims=True)
    share = np.where(total > 0, per_beam / np.maximum(total, 1e-12), 1.0 / area.beams)
    return (1.0 - area.beam_focus) / area.beams + area.beam_focus * share


@dataclass(frozen=True, slots=True)
class RadioOutcome:
    """Downlink RSRP and SINR of the UEs under some beam weights."""

    rsrp_dbm: FloatArray  # (UEs,) of the serving cell
    sinr_db: FloatArray  # (UEs,)


def downlink(ue_xy: FloatArray, weights: FloatArray, area: AreaConfig) -> RadioOutcome:
    """RSRP and SINR of UEs at ``ue_xy`` when the base stations transmit with beam ``weights``.

    Path loss is TR 38.901 (:mod:`twin.radio`, LOS when its probability is at least one half, no
    shadowing); the beam gain replaces the configuration's fixed antenna gain.
    """
    cfg = area.radio
    geom = geometry(ue_xy, site_positions(area), cfg)
    los = los_probability(geom, cfg) >= 0.5
    rx_dbm = (
        cfg.tx_power_dbm
        + cfg.antenna_gain_db
        + beam_gain_db(ue_xy, weights, area)
        - path_loss_db(geom, los, cfg)
    )
    rsrp = rx_dbm - 10.0 * np.log10(cfg.subcarriers)
    serving = np.argmax(rsrp, axis=1).astype(np.int64)
    noise_dbm = thermal_noise_dbm(cfg.bandwidth_hz, cfg.noise_figure_db)
    sinr = downlink_sinr_db(rx_dbm, serving, noise_dbm, cfg.load_factor)
    return RadioOutcome(rsrp[np.arange(len(serving)), serving], sinr)


def loss_weights(area: AreaConfig, *, rsrp_weight: float, sinr_weight: float) -> FloatArray:
    """Loss weight of each grid cell (rows, cols): ``1 + α·RSRP deficit + β·SINR deficit``.

    Deficits are each grid centre's RSRP and SINR under evenly spread beams, scaled to [0, 1] (1: the
    worst grid cell). A grid cell where coverage is poor counts more, so that the predictor's loss
    carries the optimisation targets (paper §3.1.4.2); a weight of 0 leaves that target out.
    """
    centres = grid_centres(area).reshape(-1, 2)
    even = np.full((area.sites, area.beams), 1.0 / area.beams)
    radio = downlink(centres, even, area)

    def deficit(values: FloatArray) -> FloatArray:
        spread = float(values.max() - values.min())
        return (values.max() - values) / spread if spread > 0 else np.zeros_like(values)

    weights = 1.0 + rsrp_weight * deficit(radio.rsrp_dbm) + sinr_weight * deficit(radio.sinr_db)
    return weights.reshape(area.grid_shape)


@dataclass(frozen=True, slots=True)
class ClassGridExample:
    """One evaluated window of one orchestration and setting: the true and the predicted class grids."""

    orchestration: str
    dynamic_user_share_pct: int
    window: int
    """Index of the predicted window in the simulated crowd."""
    true: IntArray
    """True occupancy class per grid cell (rows along y, columns along x)."""
    predicted: IntArray
    """Predicted occupancy class per grid cell (same shape)."""
    site_xy_m: FloatArray
    """Base-station positions (sites, 2)."""
    grid_m: float
    """Side of a grid cell (m)."""
    class_edges: tuple[int, ...]
    """Users per grid cell at which the class steps up (class 0: no user)."""

    @property
    def accuracy(self) -> float:
        """Share of grid cells whose predicted class equals the true one in this window."""
        return prediction_accuracy(self.predicted, self.true)

    @property
    def class_labels(self) -> tuple[str, ...]:
        """Each class as the user counts it covers (``0``, ``1-2``, …, ``6+``)."""
        edges = (0, *self.class_edges)
        labels = [
            str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)
        ]
        return (*labels, f"{edges[-1]}+")
