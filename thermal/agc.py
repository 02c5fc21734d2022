"""Automatic gain control: a 16-bit IR frame (counts) -> the 8-bit picture the fusion network sees.

Three, chosen by `capture_ir.agc.mode`:

- `plateau` (default): plateau histogram equalisation, the FLIR-style display AGC. The histogram
  of counts (one bin per count) is clipped at `plateau` x the frame's pixels per bin, so a large
  uniform background cannot take all the grey levels; its cumulative sum is the mapping. Detail
  is spread over the grey levels where pixels are, and a small hot object stays brighter than
  everything cooler without compressing the scene into a few levels.
- `percentile`: linear between the `low_pct` and `high_pct` percentiles of the frame.
- `window`: linear over a fixed temperature window `window_c` = [low, high] in °C (needs
  `capture_ir.radiometric`): the same temperature is always the same grey level.

For `plateau` and `percentile` the limits (the counts mapped to 0 and 255) follow the scene
through an exponential average with time constant `smoothing_s` (of capture time), so a hot object
entering the view, or a flat-field correction, does not make the whole picture pump.

Each AGC is a callable: `agc(counts (H, W) uint16, t_s) -> (H, W) uint8`; `t_s` is the frame's
capture time in seconds (any monotonic origin). The mapping is a 65536-entry lookup table built
from one 65536-bin histogram per frame (about 1 ms for 320x256 here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from thermal.radiometry import RadiometricConfig, celsius_lut


class AgcError(ValueError):
    """Bad AGC settings or a frame it cannot map. One line."""


@dataclass
class AgcConfig:
    """capture_ir.agc: how 16-bit counts become the 8-bit picture (docs/thermal.md)."""
    mode: Literal["plateau", "percentile", "window"] = "plateau"
    plateau: float = 4.0          # plateau: a count bin holds at most this x (pixels / occupied bins), > 0
    low_pct: float = 1.0          # percentile: the count mapped to 0 is this percentile of the frame, %
    high_pct: float = 99.0        # percentile: the count mapped to 255, %
    smoothing_s: float = 1.0      # plateau, percentile: time constant of the limits' average, seconds; 0 = none
    window_c: list[float] = field(default_factory=lambda: [0.0, 100.0])   # window: [low, high] °C -> 0..255

    def __post_init__(self) -> None:
        if not self.plateau > 0:
            raise ValueError(f"plateau: must be > 0, got {self.plateau}")
        if not 0 <= self.low_pct < self.high_pct <= 100:
            raise ValueError(f"low_pct: expected 0 <= low_pct < high_pct <= 100, got {self.low_pct}, {self.high_pct}")
        if self.smoothing_s < 0:
            raise ValueError(f"smoothing_s: must be >= 0 seconds, got {self.smoothing_s}")
        if len(self.window_c) != 2 or not self.window_c[0] < self.window_c[1]:
            raise ValueError(f"window_c: expected [low, high] in °C with low < high, got {self.window_c}")


def _check(counts: np.ndarray) -> None:
    if counts.ndim != 2 or counts.dtype != np.uint16:
        raise AgcError(f"agc: expected an (H, W) uint16 frame of counts, got {counts.dtype} {counts.shape}")


def _percentile_counts(cdf: np.ndarray, pct: float) -> int:
    """The count at percentile `pct` of the frame whose cumulative histogram is `cdf`."""
    n = int(cdf[-1])
    return int(np.searchsorted(cdf, max(1, math.ceil(pct / 100.0 * n)), side="left"))


class _SmoothedLimits:
    """Exponential average of (low, high) count limits over capture time."""

    def __init__(self, smoothing_s: float):
        self.tau = smoothing_s
        self.low = self.high = self.t = None

    def update(self, low: float, high: float, t_s: float | None) -> tuple[float, float]:
        if self.low is None or self.tau == 0:
            self.low, self.high = float(low), float(high)
        else:
            dt = 0.1 if t_s is None or self.t is None or t_s <= self.t else t_s - self.t
            a = 1.0 - math.exp(-dt / self.tau)
            self.low += a * (low - self.low)
            self.high += a * (high - self.high)
        self.t = t_s if t_s is not None else self.t
        return self.low, max(self.high, self.low + 1.0)


def _linear_lut(low: float, high: float) -> np.ndarray:
    c = np.arange(65536, dtype=np.float32)
    return np.clip((c - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)


class _SmoothedAgc:
    """An AGC whose limits are percentiles of each frame's histogram, smoothed over time."""

    def __init__(self, cfg: AgcConfig):
        self.cfg = cfg
        self.limits = _SmoothedLimits(cfg.smoothing_s)

    def _histogram(self, counts: np.ndarray, t_s: float | None, low_pct: float,
                   high_pct: float) -> tuple[np.ndarray, float, float]:
        """(the frame's histogram over all 65536 counts, the smoothed low and high limit)."""
        _check(counts)
        hist = np.bincount(counts.ravel(), minlength=65536)
        cdf = np.cumsum(hist)
        low, high = self.limits.update(_percentile_counts(cdf, low_pct), _percentile_counts(cdf, high_pct), t_s)
        return hist, low, high


class PercentileAgc(_SmoothedAgc):
    """Linear between smoothed percentiles of each frame."""

    def __call__(self, counts: np.ndarray, t_s: float | None = None) -> np.ndarray:
        _, low, high = self._histogram(counts, t_s, self.cfg.low_pct, self.cfg.high_pct)
        return _linear_lut(low, high)[counts]


class PlateauAgc(_SmoothedAgc):
    """Plateau histogram equalisation between the frame's (smoothed) extremes."""

    def __call__(self, counts: np.ndarray, t_s: float | None = None) -> np.ndarray:
        hist, low, high = self._histogram(counts, t_s, 0.0, 100.0)
        lo, hi = int(math.floor(low)), int(math.ceil(high))
        band = hist[lo:hi + 1].astype(np.float64)
        occupied = max(1, int(np.count_nonzero(band)))
        clipped = np.minimum(band, self.cfg.plateau * band.sum() / occupied)
        # Each count maps to the middle of its own share of the grey range; counts outside the
        # smoothed limits (the scene just got hotter or colder) saturate at 0 or 255.
        cum = np.cumsum(clipped)
        total = cum[-1] if cum.size and cum[-1] > 0 else 1.0
        lut = np.zeros(65536, np.uint8)
        lut[lo:hi + 1] = np.clip((cum - 0.5 * clipped) * (255.0 / total) + 0.5, 0, 255).astype(np.uint8)
        lut[hi + 1:] = 255
        return lut[counts]


class WindowAgc:
    """A fixed temperature window: [low, high] °C -> 0..255, the same every frame."""

    def __init__(self, cfg: AgcConfig, radiometric: RadiometricConfig):
        low, high = cfg.window_c
        temp = celsius_lut(radiometric)
        self.lut = np.clip((temp - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)

    def __call__(self, counts: np.ndarray, t_s: float | None = None) -> np.ndarray:
        _check(counts)
        return self.lut[counts]


def make_agc(cfg: AgcConfig, radiometric: RadiometricConfig | None = None):
    """The AGC that `cfg.mode` names. Raises AgcError for `window` without radiometric constants."""
    if cfg.mode == "plateau":
        return PlateauAgc(cfg)
    if cfg.mode == "percentile":
        return PercentileAgc(cfg)
    if cfg.mode == "window":
        if radiometric is None:
            raise AgcError("agc.mode window: needs capture_ir.radiometric (the counts -> temperature map)")
        return WindowAgc(cfg, radiometric)
    raise AgcError(f"agc.mode: expected plateau, percentile or window, got {cfg.mode!r}")
