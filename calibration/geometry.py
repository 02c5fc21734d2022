"""The VIS->IR geometry: the `Calibration` record, its YAML file, and corner-error measurement.

A calibration maps VIS pixel coordinates to IR pixel coordinates (`ir_from_vis`, 3x3, float64,
homogeneous, pixel centres at integer coordinates as OpenCV uses them). Warping a VIS frame with
it gives the VIS image in IR geometry, at the IR size, ready to fuse.

File format (YAML, version 1):

    version: 1
    direction: ir_from_vis
    model: homography          # or affine (third row exactly [0, 0, 1])
    vis_size: [640, 480]       # [width, height] px
    ir_size: [320, 256]        # [width, height] px
    ir_from_vis: [[a, b, c], [d, e, f], [g, h, 1.0]]
    rms_px: 0.12               # fitted error, IR px (RMS)
    method: target-chessboard  # how it was made
    date: 2026-11-25           # YYYY-MM-DD
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

FORMAT_VERSION = 1
DIRECTION = "ir_from_vis"
MODELS = ("homography", "affine")
_REQUIRED_KEYS = ("version", "direction", "model", "vis_size", "ir_size", "ir_from_vis",
                  "rms_px", "method", "date")


class CalibrationError(ValueError):
    """A calibration file, size or estimate is unusable; the message says which and why."""


def _size_pair(value, what: str) -> tuple[int, int]:
    """Validate a (w, h) pair of positive ints; raise CalibrationError naming `what`."""
    try:
        w, h = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what} must be [width, height] in px, got {value!r}") from None
    if not ok or w <= 0 or h <= 0:
        raise CalibrationError(f"{what} must be two positive integers [width, height], got {value!r}")
    return w, h


def _matrix(value, what: str) -> np.ndarray:
    """Validate a finite, invertible 3x3 matrix with [2,2] != 0; return it normalised to [2,2] = 1."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what} must be a 3x3 list of numbers, got {value!r}") from None
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise CalibrationError(f"{what} must be a finite 3x3 matrix, got shape {m.shape}")
    if abs(m[2, 2]) < 1e-12 or abs(np.linalg.det(m)) < 1e-12:
        raise CalibrationError(f"{what} is singular (not a usable homography)")
    return m / m[2, 2]


def today() -> str:
    """Today's date as YYYY-MM-DD (UTC), the format of the file's `date` key."""
    return _dt.datetime.now(_dt.timezone.utc).date().isoformat()


@dataclass
class Calibration:
    """VIS->IR geometry for one camera pair.

    ir_from_vis: 3x3 float64, maps homogeneous VIS pixel coords to IR pixel coords.
    vis_size, ir_size: (width, height) in px of the frames it was fitted for.
    model: "homography" or "affine". rms_px: fitted RMS error in IR px (nan if unknown).
    method: how it was estimated (e.g. "points-ransac", "target-chessboard", "auto-grad-ecc").
    date: YYYY-MM-DD.
    """

    ir_from_vis: np.ndarray
    vis_size: tuple[int, int]
    ir_size: tuple[int, int]
    model: str = "homography"
    rms_px: float = float("nan")
    method: str = "unknown"
    date: str = field(default_factory=today)

    def __post_init__(self) -> None:
        self.ir_from_vis = _matrix(self.ir_from_vis, "ir_from_vis")
        self.vis_size = _size_pair(self.vis_size, "vis_size")
        self.ir_size = _size_pair(self.ir_size, "ir_size")
        if self.model not in MODELS:
            raise CalibrationError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "affine" and not np.allclose(self.ir_from_vis[2, :2], 0.0, atol=1e-12):
            raise CalibrationError("model 'affine' needs ir_from_vis third row [0, 0, 1]")
        self.rms_px = float(self.rms_px)

    @property
    def id(self) -> str:
        """Short stable hash (12 hex chars) of the matrix and both sizes.

        The matrix is rounded to 1e-6 relative steps first so that a save/load round trip
        through YAML text gives the same id.
        """
        m = self.ir_from_vis
        text = ",".join(f"{v:.6e}" for v in m.ravel())
        text += f"|{self.vis_size[0]}x{self.vis_size[1]}|{self.ir_size[0]}x{self.ir_size[1]}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def vis_from_ir(self) -> np.ndarray:
        """Inverse geometry, 3x3 float64 (IR pixel coords -> VIS pixel coords)."""
        m = np.linalg.inv(self.ir_from_vis)
        return m / m[2, 2]

    def check_sizes(self, vis_size, ir_size) -> None:
        """Raise CalibrationError unless the stream's (w, h) sizes equal the fitted ones."""
        vis_size, ir_size = tuple(int(v) for v in vis_size), tuple(int(v) for v in ir_size)
        if vis_size != self.vis_size or ir_size != self.ir_size:
            raise CalibrationError(
                f"calibration {self.id} was fitted for VIS {self.vis_size[0]}x{self.vis_size[1]}, "
                f"IR {self.ir_size[0]}x{self.ir_size[1]} but the stream has VIS "
                f"{vis_size[0]}x{vis_size[1]}, IR {ir_size[0]}x{ir_size[1]} (w x h)")

    def warp(self, vis: np.ndarray, border_value: int = 0) -> np.ndarray:
        """Warp a VIS frame into IR geometry.

        vis: HxWx3 or HxW uint8 at vis_size. Returns the same dtype/channels at ir_size
        (ir_h x ir_w [x 3]); pixels that no VIS pixel reaches get `border_value`.
        """
        h, w = vis.shape[:2]
        if (w, h) != self.vis_size:
            raise CalibrationError(f"warp: VIS frame is {w}x{h} but calibration {self.id} "
                                   f"expects {self.vis_size[0]}x{self.vis_size[1]} (w x h)")
        scale = linear_scale(self.ir_from_vis, self.vis_size)
        if scale < 0.8:
            # Bilinear warping that shrinks by more than ~1.25x aliases fine texture into
            # moire; a small Gaussian first (sigma ~ (1/scale - 1)/2 VIS px) removes it.
            sigma = 0.5 * (1.0 / scale - 1.0)
            vis = cv2.GaussianBlur(vis, (0, 0), sigma)
        return cv2.warpPerspective(vis, self.ir_from_vis, self.ir_size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    def to_dict(self) -> dict:
        """The file's YAML mapping (plain Python types)."""
        return {
            "version": FORMAT_VERSION,
            "direction": DIRECTION,
            "model": self.model,
            "vis_size": list(self.vis_size),
            "ir_size": list(self.ir_size),
            "ir_from_vis": [[float(v) for v in row] for row in self.ir_from_vis],
            "rms_px": None if math.isnan(self.rms_px) else round(self.rms_px, 4),
            "method": self.method,
            "date": self.date,
        }

    def save(self, path) -> Path:
        """Write the YAML file (creating parent folders); return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ("# VIS->IR calibration: ir_xy ~ ir_from_vis @ [vis_x, vis_y, 1] (pixel coords).\n"
                  f"# id {self.id}; written by `python -m calibration` (see docs/calibration.md).\n")
        path.write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False,
                                                default_flow_style=None))
        return path


def load(path, vis_size=None, ir_size=None) -> Calibration:
    """Read a calibration YAML file.

    If vis_size / ir_size ((w, h)) are given, also check them against the file's sizes.
    Raises CalibrationError with a one-line message naming the file and the bad key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read calibration file ({e.strerror})") from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        raise CalibrationError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a YAML mapping with keys {list(_REQUIRED_KEYS)}")
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise CalibrationError(f"{path}: missing key '{key}'")
    unknown = sorted(set(data) - set(_REQUIRED_KEYS))
    if unknown:
        raise CalibrationError(f"{path}: unknown key '{unknown[0]}' (expected {list(_REQUIRED_KEYS)})")
    if data["version"] != FORMAT_VERSION:
        raise CalibrationError(f"{path}: key 'version' must be {FORMAT_VERSION}, got {data['version']!r}")
    if data["direction"] != DIRECTION:
        raise CalibrationError(f"{path}: key 'direction' must be '{DIRECTION}', got {data['direction']!r}")
    date = str(data["date"])  # YAML may give a datetime.date for an unquoted date
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise CalibrationError(f"{path}: key 'date' must be YYYY-MM-DD, got {data['date']!r}")
    rms = data["rms_px"]
    if rms is not None and not isinstance(rms, (int, float)):
        raise CalibrationError(f"{path}: key 'rms_px' must be a number, got {rms!r}")
    # Wrap field validation so its message names the file and key.
    fields = {}
    for key, check in (("vis_size", _size_pair), ("ir_size", _size_pair), ("ir_from_vis", _matrix)):
        try:
            fields[key] = check(data[key], f"key '{key}'")
        except CalibrationError as e:
            raise CalibrationError(f"{path}: {e}") from None
    try:
        calib = Calibration(ir_from_vis=fields["ir_from_vis"], vis_size=fields["vis_size"],
                            ir_size=fields["ir_size"], model=str(data["model"]),
                            rms_px=float("nan") if rms is None else float(rms),
                            method=str(data["method"]), date=date)
    except CalibrationError as e:
        raise CalibrationError(f"{path}: key 'model': {e}") from None
    if vis_size is not None or ir_size is not None:
        try:
            calib.check_sizes(vis_size if vis_size is not None else calib.vis_size,
                              ir_size if ir_size is not None else calib.ir_size)
        except CalibrationError as e:
            raise CalibrationError(f"{path}: {e}") from None
    return calib


def apply(ir_from_vis: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map Nx2 points through a 3x3 homography; returns Nx2 float64."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.hstack([xy, np.ones((len(xy), 1))]) @ np.asarray(ir_from_vis, np.float64).T
    return p[:, :2] / p[:, 2:3]


def corners(size) -> np.ndarray:
    """The 4 corner pixel centres of a (w, h) image, 4x2 float64 (TL, TR, BR, BL)."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def corner_error(ir_from_vis_a: np.ndarray, ir_from_vis_b: np.ndarray, vis_size) -> float:
    """Mean distance, in IR px, between where two geometries put the 4 VIS image corners.

    The registration accuracy measure used by the tests and bench/bench_registration.py.
    """
    c = corners(vis_size)
    return float(np.mean(np.linalg.norm(apply(ir_from_vis_a, c) - apply(ir_from_vis_b, c), axis=1)))


def linear_scale(ir_from_vis: np.ndarray, vis_size) -> float:
    """Geometric-mean linear scale (IR px per VIS px) at the VIS image centre."""
    w, h = vis_size
    c = np.array([[w / 2, h / 2], [w / 2 + 1, h / 2], [w / 2, h / 2 + 1]])
    p = apply(ir_from_vis, c)
    jac = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)
    return float(math.sqrt(abs(np.linalg.det(jac))))
