"""Pareto fronts and the minimum-energy choice at a required error (iso-accuracy).

A point (error, energy) is on the front when no other point has both a lower-or-equal error and a
lower-or-equal energy with at least one strictly lower. Equal points: the first (lowest index)
stays on the front. Everything is deterministic: ties break on error, then index.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ERROR_TOLERANCE = 1e-9


def pareto_front(errors: Sequence[float], energies: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, ordered by increasing error (decreasing energy)."""
    errors, energies = np.asarray(errors, dtype=float), np.asarray(energies, dtype=float)
    if errors.shape != energies.shape or errors.ndim != 1:
        raise ValueError(f"errors and energies must be 1-D of one length, got {errors.shape} and {energies.shape}")
    # Sort by error, then energy, then index; a point is on the front when its energy is strictly
    # below every energy seen at a lower-or-equal error.
    order = np.lexsort((np.arange(len(errors)), energies, errors))
    front, best = [], np.inf
    for i in order:
        if energies[i] < best:
            front.append(int(i))
            best = energies[i]
    return front


def min_energy_at(errors: Sequence[float], energies: Sequence[float], target_error: float) -> int | None:
    """Index of the least-energy point with error <= target (ties: lower error, then index); None if none."""
    errors, energies = np.asarray(errors, dtype=float), np.asarray(energies, dtype=float)
    # A tolerance far below any test-set resolution, so 1 - 0.95 still meets a 0.05 target.
    ok = np.flatnonzero(errors <= target_error + ERROR_TOLERANCE)
    if ok.size == 0:
        return None
    order = np.lexsort((ok, errors[ok], energies[ok]))
    return int(ok[order[0]])
