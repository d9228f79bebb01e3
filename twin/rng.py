"""Named random streams spawned from one seed (ARCHITECTURE.md, determinism contract).

Every consumer asks for its own stream by name (``"data"``, ``"fl.selection"``, ``"device/hh-007"``);
streams are independent of each other and of the order in which they are requested, and no code
touches global RNG state.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


class SeedStreams:
    """Factory of independent numpy / torch generators derived from one seed."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed

    def _sequence(self, name: str) -> np.random.SeedSequence:
        key = tuple(zlib.crc32(part.encode()) for part in name.split("/"))
        return np.random.SeedSequence(self.seed, spawn_key=key)

    def numpy(self, name: str) -> np.random.Generator:
        """A numpy Generator for stream ``name``."""
        return np.random.default_rng(self._sequence(name))

    def torch(self, name: str) -> torch.Generator:
        """A torch CPU Generator for stream ``name``."""
        state = self._sequence(name).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def integer(self, name: str) -> int:
        """A 31-bit integer seed for libraries that want one (e.g. Mesa's ``rng=``)."""
        return int(self._sequence(name).generate_state(1, dtype=np.uint32)[0] >> 1)
