"""Calibration from VIS/IR point pairs (clicked by hand or detected on a target), with RANSAC.

A CSV of pairs has a header and one pair per row: `vis_x,vis_y,ir_x,ir_y` (pixel coords).
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from .geometry import Calibration, CalibrationError, apply, today

CSV_COLUMNS = ("vis_x", "vis_y", "ir_x", "ir_y")


def read_pairs_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read point pairs from a CSV with header vis_x,vis_y,ir_x,ir_y.

    Returns (vis_xy, ir_xy), each Nx2 float64. Raises CalibrationError naming the file and
    the row or column that is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read point-pair CSV ({e.strerror})") from None
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise CalibrationError(f"{path}: no point pairs (expected header {','.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_COLUMNS if c not in rows[0]]
    if missing:
        raise CalibrationError(f"{path}: missing column '{missing[0]}' "
                               f"(expected header {','.join(CSV_COLUMNS)})")
    vals = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            vals.append([float(row[c]) for c in CSV_COLUMNS])
        except (TypeError, ValueError):
            raise CalibrationError(f"{path}: line {i}: expected 4 numbers, got {row}") from None
    arr = np.asarray(vals, dtype=np.float64)
    return arr[:, :2], arr[:, 2:]


def fit_points(vis_xy, ir_xy, vis_size, ir_size, model: str = "homography",
               ransac_px: float = 3.0, method: str = "points-ransac") -> Calibration:
    """Fit ir_from_vis to point pairs, robust to outliers.

    vis_xy, ir_xy: Nx2 pixel coords (N >= 4 for a homography, >= 3 for affine).
    ransac_px: inlier threshold in IR px. The inliers are refitted by least squares
    (Levenberg-Marquardt for the homography), and rms_px is their RMS reprojection error.
    Falls back to an affine model when the homography is degenerate (e.g. collinear points).
    """
    vis_xy = np.asarray(vis_xy, np.float64).reshape(-1, 2)
    ir_xy = np.asarray(ir_xy, np.float64).reshape(-1, 2)
    if len(vis_xy) != len(ir_xy):
        raise CalibrationError(f"points: {len(vis_xy)} VIS points but {len(ir_xy)} IR points")
    if model not in ("homography", "affine"):
        raise CalibrationError(f"points: model must be 'homography' or 'affine', got {model!r}")
    need = 4 if model == "homography" else 3
    if len(vis_xy) < need:
        raise CalibrationError(f"points: a {model} needs at least {need} point pairs, got {len(vis_xy)}")

    m = None
    if model == "homography":
        m, inl = _fit_homography(vis_xy, ir_xy, ransac_px)
        if m is None:
            model = "affine"  # degenerate for 8 dof; 6 dof may still be determined
            method += "-affine-fallback"
    if model == "affine":
        m, inl = _fit_affine(vis_xy, ir_xy, ransac_px)
        if m is None:
            raise CalibrationError("points: no consistent geometry found (points degenerate or "
                                   "mostly outliers)")
    resid = np.linalg.norm(apply(m, vis_xy[inl]) - ir_xy[inl], axis=1)
    rms = float(np.sqrt(np.mean(resid ** 2)))
    return Calibration(ir_from_vis=m, vis_size=vis_size, ir_size=ir_size, model=model,
                       rms_px=rms, method=method, date=today())


def _fit_homography(vis_xy, ir_xy, ransac_px):
    """RANSAC homography then an LM refit on inliers; (None, None) if degenerate."""
    src, dst = vis_xy.astype(np.float32), ir_xy.astype(np.float32)
    if len(src) == 4:
        m, mask = cv2.findHomography(src, dst, 0)
        mask = np.ones((4, 1), np.uint8) if m is not None else None
    else:
        m, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px, maxIters=5000,
                                     confidence=0.999)
    if m is None or mask is None:
        return None, None
    inl = mask.ravel().astype(bool)
    if inl.sum() < 4:
        return None, None
    m, _ = cv2.findHomography(src[inl], dst[inl], 0)  # least squares + LM on inliers
    if m is None or abs(np.linalg.det(m)) < 1e-12 or not _well_conditioned(m, vis_xy[inl]):
        return None, None
    return m / m[2, 2], inl


def _fit_affine(vis_xy, ir_xy, ransac_px):
    src, dst = vis_xy.astype(np.float32), ir_xy.astype(np.float32)
    a, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=ransac_px,
                                   maxIters=5000, confidence=0.999, refineIters=20)
    if a is None:
        return None, None
    inl = mask.ravel().astype(bool)
    if inl.sum() < 3:
        return None, None
    return np.vstack([a, [0.0, 0.0, 1.0]]), inl


def _well_conditioned(m: np.ndarray, xy: np.ndarray) -> bool:
    """A homography fitted to nearly collinear points bends wildly: reject a sign flip of the
    projective denominator inside the points' bounding box."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    box = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    den = np.hstack([box, np.ones((4, 1))]) @ m[2]
    return bool(np.all(den > 0) or np.all(den < 0))
