"""Radiometry: a radiometric LWIR camera's counts -> temperature, and the per-frame temperatures.

Two maps, as cameras document them:

- linear: kelvin = gain * counts + offset_k (e.g. a FLIR Lepton/Boson in "TLinear" mode:
  gain 0.01 K/count, offset 0 K; at 0.1 K/count in its low-resolution mode).
- planck: the camera's own constants R, B, F, O (FLIR names; from the camera's calibration
  data or its SDK): counts = R / (exp(B / T) - F) + O, so T = B / ln(R / (counts - O) + F), T in K.
  counts - O is proportional to the radiance the pixel receives, which is why smoke and optics
  mix linearly in counts (the synthetic radiometric camera, stages/capture/synthetic.py, relies on that).

`frame_temperatures(counts, radiometric)` gives what a fused packet carries in
`meta.ir_temperature_c`: min, max, p99 of the frame in °C and the hottest spot (the centroid of
the connected pixels within `HOT_SPOT_BAND_C` of the maximum around the hottest pixel), in the
frame's pixel coordinates (x right, y down, pixel centres at integers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

KELVIN = 273.15
HOT_SPOT_BAND_C = 1.0      # the hottest spot: pixels within this of the frame's maximum, °C


class RadiometryError(ValueError):
    """Bad radiometric constants or counts outside what they can map. One line."""


@dataclass
class RadiometricConfig:
    """capture_ir.radiometric: how the IR camera's counts map to temperature."""
    kind: Literal["linear", "planck"] = "linear"   # linear: K = gain * counts + offset_k | planck: R, B, F, O
    gain: float = 0.01          # linear: kelvin per count (FLIR TLinear high resolution)
    offset_k: float = 0.0       # linear: kelvin at count 0
    R: float = 0.0              # planck: the camera's R (counts)
    B: float = 0.0              # planck: B (kelvin)
    F: float = 1.0              # planck: F (1 for most cameras)
    O: float = 0.0              # planck: O, the count offset

    def __post_init__(self) -> None:
        if self.kind == "linear" and not self.gain > 0:
            raise ValueError(f"gain: must be > 0 kelvin per count, got {self.gain}")
        if self.kind == "planck":
            if not self.R > 0:
                raise ValueError(f"R: must be > 0 (the camera's Planck R), got {self.R}")
            if not self.B > 0:
                raise ValueError(f"B: must be > 0 kelvin (the camera's Planck B), got {self.B}")


def counts_to_kelvin(counts: np.ndarray, rc: RadiometricConfig) -> np.ndarray:
    """Counts (any shape, any numeric dtype) -> kelvin, float32. Counts at or below the Planck
    offset O (no radiance) map to 0 K rather than NaN."""
    c = np.asarray(counts, dtype=np.float64)
    if rc.kind == "linear":
        return (rc.gain * c + rc.offset_k).astype(np.float32)
    radiance = np.maximum(c - rc.O, 1e-6)
    return (rc.B / np.log(rc.R / radiance + rc.F)).astype(np.float32)


def kelvin_to_counts(kelvin: np.ndarray | float, rc: RadiometricConfig) -> np.ndarray:
    """Kelvin -> counts (float64, not rounded or clipped): the inverse of counts_to_kelvin."""
    t = np.asarray(kelvin, dtype=np.float64)
    if rc.kind == "linear":
        return (t - rc.offset_k) / rc.gain
    return rc.R / (np.exp(rc.B / t) - rc.F) + rc.O


def counts_to_celsius(counts: np.ndarray, rc: RadiometricConfig) -> np.ndarray:
    return counts_to_kelvin(counts, rc) - np.float32(KELVIN)


def celsius_lut(rc: RadiometricConfig) -> np.ndarray:
    """°C of every 16-bit count value: (65536,) float32, so a frame converts by indexing."""
    return counts_to_celsius(np.arange(65536), rc)


def frame_temperatures(counts: np.ndarray, rc: RadiometricConfig, lut: np.ndarray | None = None) -> dict:
    """meta.ir_temperature_c of one frame: {"min", "max", "p99", "hottest": {"x", "y", "c"}}.

    counts: (H, W) uint16. Temperatures in °C rounded to 0.01, the hottest spot's x, y in pixels
    rounded to 0.1 (the frame's own coordinates: the fused frame's, after registration).
    """
    if counts.ndim != 2 or counts.dtype != np.uint16:
        raise RadiometryError(f"radiometry: expected (H, W) uint16 counts, got {counts.dtype} {counts.shape}")
    temp = (lut if lut is not None else celsius_lut(rc))[counts]
    t_max = float(temp.max())
    # The hottest spot: the pixels within the band of the maximum that touch the hottest pixel.
    # Its centroid is stable where a lone argmax would wander over a hot plateau with the noise.
    mask = (temp >= t_max - HOT_SPOT_BAND_C).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    iy, ix = np.unravel_index(int(np.argmax(temp)), temp.shape)
    ys, xs = np.nonzero(labels == labels[iy, ix])
    return {"min": round(float(temp.min()), 2), "max": round(t_max, 2),
            "p99": round(float(np.percentile(temp, 99)), 2),
            "hottest": {"x": round(float(xs.mean()), 1), "y": round(float(ys.mean()), 1), "c": round(t_max, 2),
                        "area_px": int(xs.size)}}
