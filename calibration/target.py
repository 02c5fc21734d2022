"""Calibration from a target seen by both cameras: a checkerboard or a circle grid.

In the field the target is heated (or cooled) so that it shows in LWIR: a printed board in the
sun, a board with a heat pad behind it, or a metal plate with drilled holes in front of a warm
surface. Its IR image often has inverted contrast; detection here does not care about polarity.

Several frame pairs (the target moved around the overlap, at about the working distance) are
pooled into one fit. A homography is exact only for a plane or for distant scenes; hold the
target at the distance you care about most (parallax between side-by-side cameras is
baseline / distance).

Corner ordering: a detector numbers a grid from one of its ends, and an inverted-contrast or
symmetric grid can be numbered from the opposite end in the other camera. Any renumbering by a
symmetry of the grid still fits a homography exactly, so the fit error cannot tell them apart.
Both cameras are mounted upright side by side, so we keep the numbering whose geometry rotates
the least (and does not mirror).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .geometry import Calibration, CalibrationError, apply, today
from .points import fit_points

PATTERNS = ("chessboard", "circles", "acircles")


def to_gray(img: np.ndarray) -> np.ndarray:
    """HxW or HxWx3 (BGR) or HxWx4 uint8/uint16 -> HxW uint8."""
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.ascontiguousarray(img)


def detect(img: np.ndarray, pattern: str = "chessboard", grid=(9, 6)) -> np.ndarray | None:
    """Find the target's points in one image.

    img: HxW or HxWx3 uint8. grid: (columns, rows) of inner corners (chessboard) or circles.
    Returns Nx2 float64 pixel coords in the detector's row-major order, or None if not found.
    Small images are tried again at 2x, since the detectors need a few px per square.
    """
    if pattern not in PATTERNS:
        raise CalibrationError(f"target: pattern must be one of {PATTERNS}, got {pattern!r}")
    gray = to_gray(img)
    pts = _detect_gray(gray, pattern, grid)
    if pts is None and max(gray.shape) < 1000:
        up = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        pts = _detect_gray(up, pattern, grid)
        if pts is not None:
            # cv2.resize maps destination pixel centre x_d to source (x_d + 0.5) / 2 - 0.5.
            pts = (pts + 0.5) / 2.0 - 0.5
    return pts


def _detect_gray(gray, pattern, grid):
    cols, rows = grid
    if pattern == "chessboard":
        flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
        ok, c = cv2.findChessboardCornersSB(gray, (cols, rows), flags=flags)
        if not ok:
            ok, c = cv2.findChessboardCorners(
                gray, (cols, rows), flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
            if not ok:
                return None
        c = np.ascontiguousarray(c, dtype=np.float32).reshape(-1, 1, 2)
        # cornerSubPix window: a third of the smallest corner spacing, so it never reaches
        # a neighbouring corner.
        spacing = _min_spacing(c.reshape(-1, 2), cols)
        win = int(max(2, min(11, spacing / 3)))
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
        c = cv2.cornerSubPix(gray, c, (win, win), (-1, -1), crit)
        return c.reshape(-1, 2).astype(np.float64)
    flags = cv2.CALIB_CB_SYMMETRIC_GRID if pattern == "circles" else cv2.CALIB_CB_ASYMMETRIC_GRID
    params = cv2.SimpleBlobDetector_Params()
    params.minArea = 8.0
    params.maxArea = float(gray.size) / 4
    params.minDistBetweenBlobs = 3.0
    detector = cv2.SimpleBlobDetector_create(params)
    # The blob detector looks for dark blobs; a heated plate shows bright holes: try both.
    for img in (gray, 255 - gray):
        ok, c = cv2.findCirclesGrid(img, (cols, rows), flags=flags, blobDetector=detector)
        if ok:
            return c.reshape(-1, 2).astype(np.float64)
    return None


def _min_spacing(pts: np.ndarray, cols: int) -> float:
    grid = pts.reshape(-1, cols, 2)
    dx = np.linalg.norm(np.diff(grid, axis=1), axis=2).min() if cols > 1 else np.inf
    dy = np.linalg.norm(np.diff(grid, axis=0), axis=2).min() if len(grid) > 1 else np.inf
    return float(min(dx, dy))


def _renumberings(n_cols: int, n_rows: int, pattern: str) -> list[np.ndarray]:
    """Index permutations of a row-major grid by its symmetries (those keeping its shape)."""
    idx = np.arange(n_cols * n_rows).reshape(n_rows, n_cols)
    perms = [idx, idx[::-1, ::-1]]  # identity and 180 degree rotation
    if pattern != "acircles":
        perms += [idx[::-1, :], idx[:, ::-1]]  # mirrors: rejected later unless det > 0
        if n_cols == n_rows:
            perms += [np.rot90(idx, 1), np.rot90(idx, 3), idx.T, idx.T[::-1, ::-1]]
    return [p.ravel() for p in perms]


def _rotation_deg(ir_from_vis: np.ndarray, vis_pts: np.ndarray) -> float:
    """Rotation (deg) of the local linear map at the points' centroid; +inf if it mirrors."""
    c = vis_pts.mean(axis=0)
    p = apply(ir_from_vis, np.array([c, c + [1, 0], c + [0, 1]]))
    jac = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)
    if np.linalg.det(jac) <= 0:
        return math.inf
    return abs(math.degrees(math.atan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1])))


def match_order(vis_pts: np.ndarray, ir_pts: np.ndarray, grid, pattern: str) -> np.ndarray:
    """Renumber ir_pts (Nx2) so that point i is the same target point as vis_pts[i]."""
    best, best_rot = None, math.inf
    for perm in _renumberings(grid[0], grid[1], pattern):
        cand = ir_pts[perm]
        m, _ = cv2.findHomography(vis_pts.astype(np.float32), cand.astype(np.float32), 0)
        if m is None:
            continue
        rot = _rotation_deg(m, vis_pts)
        if rot < best_rot:
            best, best_rot = cand, rot
    if best is None or best_rot > 45.0:
        raise CalibrationError("target: cannot match the target's corner numbering between VIS "
                               "and IR (cameras must be mounted upright, < 45 deg apart)")
    return best


def fit_target(vis_frames, ir_frames, pattern: str = "chessboard", grid=(9, 6),
               model: str = "homography", ransac_px: float = 2.0, min_pairs: int = 1,
               report: list | None = None) -> Calibration:
    """Fit ir_from_vis to a target detected in several VIS/IR frame pairs.

    vis_frames: sequence of HxWx3 or HxW uint8 (all the same size); ir_frames likewise, same
    length. grid: (columns, rows) of inner corners / circles. Pairs where either view misses
    the target are skipped; at least `min_pairs` must remain. rms_px is the RMS reprojection
    error of all used points, in IR px. If `report` is a list, one line per pair is appended.
    """
    vis_frames, ir_frames = list(vis_frames), list(ir_frames)
    if not vis_frames or len(vis_frames) != len(ir_frames):
        raise CalibrationError(f"target: need the same, non-zero number of VIS and IR frames, got "
                               f"{len(vis_frames)} and {len(ir_frames)}")
    vis_size = (vis_frames[0].shape[1], vis_frames[0].shape[0])
    ir_size = (ir_frames[0].shape[1], ir_frames[0].shape[0])
    all_vis, all_ir, used = [], [], 0
    for i, (v, r) in enumerate(zip(vis_frames, ir_frames)):
        if (v.shape[1], v.shape[0]) != vis_size or (r.shape[1], r.shape[0]) != ir_size:
            raise CalibrationError(f"target: frame pair {i} has sizes {v.shape[1]}x{v.shape[0]} / "
                                   f"{r.shape[1]}x{r.shape[0]}, expected those of pair 0")
        pv, pr = detect(v, pattern, grid), detect(r, pattern, grid)
        if pv is None or pr is None:
            if report is not None:
                report.append(f"pair {i}: target not found in "
                              f"{'VIS' if pv is None else ''}{' and ' if pv is None and pr is None else ''}"
                              f"{'IR' if pr is None else ''}; skipped")
            continue
        pr = match_order(pv, pr, grid, pattern)
        all_vis.append(pv)
        all_ir.append(pr)
        used += 1
        if report is not None:
            report.append(f"pair {i}: {len(pv)} points")
    if used < min_pairs:
        raise CalibrationError(f"target: {pattern} {grid[0]}x{grid[1]} found in both views of only "
                               f"{used} of {len(vis_frames)} frame pairs (need {min_pairs})")
    calib = fit_points(np.vstack(all_vis), np.vstack(all_ir), vis_size, ir_size, model=model,
                       ransac_px=ransac_px, method=f"target-{pattern}")
    calib.date = today()
    return calib
