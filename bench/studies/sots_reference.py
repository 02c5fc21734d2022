"""What Y-only dehazing would take on SOTS-indoor: reference corrections, no learning.

    python bench/studies/sots_reference.py

Prints the Y PSNR (dB, mean over the 50 staged pairs) of the hazy image, a percentile stretch,
the dark channel prior on Y alone and on colour, and an *oracle* per-image gain and offset fitted
to the clear image (the best any global correction can do), plus the 1st percentile of Y of clean
RoadScene VIS beside SOTS hazy and clear: the black-level cue that haze removal relies on.
SOTS is evaluation data: nothing here is fitted except the oracle, which sees the answer.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lmfusion import data as D  # noqa: E402


def y_of(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[..., 0].astype(np.float32) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def dark_channel_prior(img: np.ndarray, patch: int = 15, omega: float = 0.95) -> np.ndarray:
    """He et al. 2009 with the transmission smoothed by a Gaussian (no guided filter in
    opencv-python). ``img`` float32 HxW or HxWx3 in [0, 1]."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    mins = img.min(2) if img.ndim == 3 else img
    dark = cv2.erode(mins, k)
    top = np.argsort(dark.ravel())[-max(1, dark.size // 1000):]          # haziest 0.1%
    flat = img.reshape(-1, img.shape[2] if img.ndim == 3 else 1)
    airlight = flat[top].max(0)
    norm = img / airlight
    t = 1 - omega * cv2.erode(norm.min(2) if norm.ndim == 3 else norm, k)
    t = np.maximum(cv2.GaussianBlur(t.astype(np.float32), (0, 0), 8), 0.1)
    return (img - airlight) / (t[..., None] if img.ndim == 3 else t) + airlight


def main() -> None:
    rows: dict[str, list[float]] = {k: [] for k in (
        "hazy input", "percentile stretch 1/99", "dark channel prior, Y only",
        "dark channel prior, colour (then Y)", "oracle per-image gain + offset")}
    p1 = {"SOTS hazy": [], "SOTS clear": []}
    for p in D.sots_pairs():
        hazy_bgr = D.read_color(p.vis)
        h, c = y_of(hazy_bgr), y_of(D.read_color(p.ir))
        rows["hazy input"].append(psnr(h, c))
        lo, hi = np.percentile(h, [1, 99])
        rows["percentile stretch 1/99"].append(psnr((h - lo) / max(hi - lo, 1e-3), c))
        rows["dark channel prior, Y only"].append(psnr(dark_channel_prior(h), c))
        rgb = dark_channel_prior(hazy_bgr[..., ::-1].astype(np.float32) / 255)
        rows["dark channel prior, colour (then Y)"].append(
            psnr(y_of(np.clip(rgb[..., ::-1] * 255, 0, 255).astype(np.uint8)), c))
        gain, offset = np.linalg.lstsq(np.stack([h.ravel(), np.ones(h.size)], 1), c.ravel(), rcond=None)[0]
        rows["oracle per-image gain + offset"].append(psnr(h * gain + offset, c))
        p1["SOTS hazy"].append(np.percentile(h, 1) * 255)
        p1["SOTS clear"].append(np.percentile(c, 1) * 255)
    print(f"### SOTS-indoor, {len(rows['hazy input'])} pairs, Y PSNR against the clear image\n")
    print("| correction | dB (mean) |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {np.mean(v):.2f} |")
    rs = [np.percentile(y_of(D.load_roadscene_pair(p)[0]), 1) * 255 for p in D.roadscene_pairs("test")]
    print("\n### 1st percentile of Y (0-255), median over images\n")
    print("| images | median | 10th-90th percentile |\n|---|---|---|")
    for k, v in {"RoadScene test VIS (clean)": rs, **p1}.items():
        print(f"| {k} | {np.median(v):.1f} | {np.percentile(v, 10):.1f}-{np.percentile(v, 90):.1f} |")


if __name__ == "__main__":
    main()
