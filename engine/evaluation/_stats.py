"""Bootstrap statistics: a mean, or a difference of two means, with a 95%
percentile-bootstrap confidence interval (fixed seed: the same values always
give the same interval).

Used by ``aidsafe eval``, ``bench``, ``compare``, ``optimize``, the model card
and the viewer; numpy only, no model or DSPy import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval over ``n`` values
    (``mean`` is ``None`` when there are no values)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def format(self, digits: int = 2, percent: bool = False) -> str:
        if self.mean is None:
            return "n/a"
        f = (lambda v: f"{100 * v:.{digits}f}%") if percent else (lambda v: f"{v:.{digits}f}")
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    means = np.empty(n_resamples)
    # Chunks keep memory flat for large files (n_resamples x n indexes).
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _interval(point: float, samples: np.ndarray, n: int, confidence: float) -> Interval:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(float(point), float(low), float(high), n)


def bootstrap_mean(values: Sequence[float], n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = SEED) -> Interval:
    """The mean of ``values`` with a percentile-bootstrap interval."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if len(data) == 0:
        return Interval(None, None, None, 0)
    rng = np.random.default_rng(seed)
    return _interval(data.mean(), _resampled_means(data, n_resamples, rng), len(data), confidence)


def bootstrap_difference(first: Sequence[float], second: Sequence[float], paired: bool,
                         n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                         seed: int = SEED) -> Interval:
    """``mean(second) - mean(first)`` with a bootstrap interval. ``paired``:
    the two sequences are aligned (same ids) and resampled together."""
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Interval(None, None, None, 0)
    rng = np.random.default_rng(seed)
    if paired:
        if len(a) != len(b):
            raise ValueError("paired samples must have the same length")
        diffs = b - a
        return _interval(diffs.mean(), _resampled_means(diffs, n_resamples, rng), len(diffs), confidence)
    samples = _resampled_means(b, n_resamples, rng) - _resampled_means(a, n_resamples, rng)
    return _interval(b.mean() - a.mean(), samples, min(len(a), len(b)), confidence)


__all__ = ["CONFIDENCE", "N_RESAMPLES", "SEED", "Interval", "bootstrap_difference", "bootstrap_mean"]
