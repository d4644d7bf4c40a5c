"""Length-only inference-time corrections of a reward, fitted on a validation set.

- ``LengthPenalty``: r - alpha * length, with alpha the least-squares slope of reward on length (so the
  corrected validation rewards are uncorrelated with length).
- ``LWRCorrection``: r - f(length) + mean(f), with f a locally weighted (tricube, local linear) regression of
  reward on length (LOWESS without robustness iterations), evaluated at any length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.errors import InputError


def _check(lengths: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(lengths, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"lengths {x.shape} and rewards {y.shape} must be equal 1-d arrays")
    if len(x) < 3:
        raise InputError(f"need at least 3 validation responses to fit a length correction, got {len(x)}")
    return x, y


@dataclass
class LengthPenalty:
    """Subtract a linear length term."""

    alpha: float = 0.0

    @classmethod
    def fit(cls, lengths: np.ndarray, rewards: np.ndarray) -> "LengthPenalty":
        """alpha = cov(length, reward) / var(length) on the validation responses."""
        x, y = _check(lengths, rewards)
        vx = x.var()
        return cls(alpha=float(((x - x.mean()) * (y - y.mean())).mean() / vx) if vx > 0 else 0.0)

    def apply(self, lengths: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return np.asarray(rewards, dtype=np.float64) - self.alpha * np.asarray(lengths, dtype=np.float64)


@dataclass
class LWRCorrection:
    """Subtract a locally weighted regression of reward on length."""

    x: np.ndarray
    y: np.ndarray
    frac: float = 0.3
    offset: float = 0.0

    @classmethod
    def fit(cls, lengths: np.ndarray, rewards: np.ndarray, frac: float = 0.3) -> "LWRCorrection":
        """Keep the validation points; ``frac`` is the share of them in each local fit."""
        if not 0.0 < frac <= 1.0:
            raise InputError(f"frac must be in (0, 1], got {frac}")
        x, y = _check(lengths, rewards)
        m = cls(x=x, y=y, frac=frac)
        m.offset = float(m.predict(x).mean())
        return m

    def predict(self, lengths: np.ndarray) -> np.ndarray:
        """f(length): the local linear fit at each query length, ``# [n_query]``."""
        q = np.asarray(lengths, dtype=np.float64)
        n = len(self.x)
        k = max(2, int(np.ceil(self.frac * n)))
        d = np.abs(q[:, None] - self.x[None, :])  # [n_query, n]
        h = np.partition(d, k - 1, axis=1)[:, k - 1]  # distance to the k-th nearest validation point
        h = np.where(h > 0, h, 1.0) * 1.0001
        w = np.clip(1 - (d / h[:, None]) ** 3, 0, None) ** 3  # tricube
        sw = w.sum(1)
        mx = (w * self.x).sum(1) / sw
        my = (w * self.y).sum(1) / sw
        cov = (w * (self.x - mx[:, None]) * (self.y - my[:, None])).sum(1)
        var = (w * (self.x - mx[:, None]) ** 2).sum(1)
        slope = np.where(var > 1e-12, cov / np.where(var > 1e-12, var, 1.0), 0.0)
        return my + slope * (q - mx)

    def apply(self, lengths: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return np.asarray(rewards, dtype=np.float64) - self.predict(lengths) + self.offset
