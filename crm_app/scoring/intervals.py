"""Rates with honest error bars: the Wilson score interval for a proportion."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95%


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for successes / trials (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and stays sensible for small samples
    and rates near 0 or 1, which is where a sales team's segments live. (0.0, 1.0) for no trials.
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be between 0 and {trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
