"""Classical VIS/IR fusers: the yardsticks the learned fuser must beat, and real-time fallbacks.

Same conventions as ``Fuser.fuse``:
- ``vis``: ``HxWx3`` BGR uint8 (colour) or ``HxW`` / ``HxWx1`` gray uint8.
- ``ir``: ``HxW`` / ``HxWx1`` uint8, or ``HxWx3`` uint8 holding a gray image (its BT.601 luma is used).
- Same height and width, else :class:`lmfusion.errors.InputError` (a ``ValueError``) naming both
  shapes; any dtype other than uint8 raises it too.
- Fusion runs on luminance only. A colour ``vis`` gives ``HxWx3`` BGR uint8 whose chroma (Cr, Cb)
  is the visible image's; a gray ``vis`` gives ``HxW`` uint8.

Both are a few milliseconds at 640x512 on one CPU core (see ``bench/bench_metrics.py``).
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import ConfigError, InputError

__all__ = ["fuse_average", "fuse_laplacian", "dehaze_dcp"]


def _gray_u8(img: np.ndarray, name: str) -> np.ndarray:
    """``HxW`` uint8 from an ``HxW``, ``HxWx1`` or ``HxWx3`` (BGR) uint8 image."""
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 2:
        return img
    raise InputError(f"{name}: expected an HxW gray or HxWx3 BGR image, got shape {img.shape}")


def _split(vis: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate the pair; return (vis Y HxW uint8, ir HxW uint8, vis YCrCb HxWx3 or None if gray)."""
    for name, img in (("vis", vis), ("ir", ir)):
        if not isinstance(img, np.ndarray):
            raise InputError(f"{name}: expected a numpy uint8 image, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise InputError(f"{name}: expected dtype uint8, got {img.dtype} (shape {img.shape})")
    if vis.ndim not in (2, 3) or ir.ndim not in (2, 3) or vis.shape[:2] != ir.shape[:2]:
        raise InputError(f"vis and ir must be images of the same height and width: vis {vis.shape}, ir {ir.shape}")
    ir_y = _gray_u8(ir, "ir")
    if vis.ndim == 3 and vis.shape[2] == 3:
        ycrcb = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)
        return ycrcb[:, :, 0], ir_y, ycrcb
    return _gray_u8(vis, "vis"), ir_y, None


def _merge(y: np.ndarray, ycrcb: np.ndarray | None) -> np.ndarray:
    """Fused Y (HxW uint8) back to the caller's format: BGR with the visible chroma, or gray."""
    if ycrcb is None:
        return y
    ycrcb[:, :, 0] = y
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def fuse_average(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Fused luminance = (Y_vis + IR) / 2, rounded; chroma from ``vis``.

    ``vis`` HxWx3 BGR or HxW uint8, ``ir`` HxW uint8 -> HxWx3 BGR or HxW uint8 (as ``vis``).
    Raises InputError on a dtype other than uint8 or different H, W.
    """
    y_vis, y_ir, ycrcb = _split(vis, ir)
    return _merge(cv2.addWeighted(y_vis, 0.5, y_ir, 0.5, 0.0), ycrcb)


def fuse_laplacian(vis: np.ndarray, ir: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion (Burt & Adelson 1983/Burt & Kolczynski 1993 style) of luminance.

    Both luminances (float32) are decomposed into ``levels`` band-pass (Laplacian) levels plus a
    low-pass residual with OpenCV's 5-tap pyrDown/pyrUp. Each band-pass coefficient is taken from
    whichever source has the larger absolute value (keeps the stronger edge or texture of either
    camera); the residual is the average of the two (keeps overall brightness balanced). The
    pyramid is then collapsed, clipped to 0..255 and rounded; chroma comes from ``vis``.
    ``levels`` >= 1; it is capped where the coarsest level would shrink below 2 px.
    ``vis`` HxWx3 BGR or HxW uint8, ``ir`` HxW uint8 -> HxWx3 BGR or HxW uint8 (as ``vis``).
    Raises InputError on a dtype other than uint8 or different H, W; ConfigError on bad levels.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ConfigError(f"fuse_laplacian levels: expected an int >= 1, got {levels!r}")
    y_vis, y_ir, ycrcb = _split(vis, ir)
    h, w = y_vis.shape
    levels = int(min(levels, max(1, int(np.log2(min(h, w))) - 1)))

    # Two contiguous float32 pyramids and OpenCV element-wise ops: about twice as fast as one
    # HxWx2 pyramid with numpy selection, whose strided temporaries dominate at 640x512.
    g_vis, g_ir = y_vis.astype(np.float32), y_ir.astype(np.float32)
    laps = []  # fused band-pass levels, finest first, float32 HxW, H/2 x W/2, ...
    for _ in range(levels):
        size = (g_vis.shape[1], g_vis.shape[0])
        down_vis, down_ir = cv2.pyrDown(g_vis), cv2.pyrDown(g_ir)
        lap_vis = cv2.subtract(g_vis, cv2.pyrUp(down_vis, dstsize=size))
        lap_ir = cv2.subtract(g_ir, cv2.pyrUp(down_ir, dstsize=size))
        ir_stronger = cv2.compare(np.abs(lap_vis), np.abs(lap_ir), cv2.CMP_LT)  # ties keep VIS
        laps.append(cv2.copyTo(lap_ir, ir_stronger, lap_vis))
        g_vis, g_ir = down_vis, down_ir
    fused = cv2.addWeighted(g_vis, 0.5, g_ir, 0.5, 0.0)  # low-pass residual: the average
    for lap in reversed(laps):
        fused = cv2.add(cv2.pyrUp(fused, dstsize=(lap.shape[1], lap.shape[0])), lap)
    y = np.clip(fused + 0.5, 0, 255).astype(np.uint8)  # +0.5 then truncate = round half up
    return _merge(y, ycrcb)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Guided filter (He et al. 2010), float32 HxW guide and source."""
    box = lambda x: cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)
    mg, ms = box(guide), box(src)
    a = (box(guide * src) - mg * ms) / (box(guide * guide) - mg * mg + eps)
    b = ms - a * mg
    return box(a) * guide + box(b)


def dehaze_dcp(vis: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1,
               radius: int = 40, eps: float = 1e-3) -> np.ndarray:
    """Dark channel prior dehazing (He, Sun & Tang 2009), t refined by the guided filter (He et
    al. 2010), the standard settings of both papers: the classical reference for ``clear()``.

    ``vis`` HxWx3 BGR or HxW gray uint8 -> the same shape, uint8. A from the 0.1 % haziest
    pixels (highest dark channel), the brightest of them per channel.
    """
    if not isinstance(vis, np.ndarray) or vis.dtype != np.uint8 or vis.ndim not in (2, 3):
        raise InputError(f"vis: expected an HxW or HxWx3 uint8 image, got {getattr(vis, 'shape', type(vis))}")
    img = vis.astype(np.float32) / 255
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    mins = img.min(2) if img.ndim == 3 else img
    dark = cv2.erode(mins, k)
    top = np.argsort(dark.ravel())[-max(1, dark.size // 1000):]
    flat = img.reshape(-1, img.shape[2] if img.ndim == 3 else 1)
    a = np.maximum(flat[top].max(0), 1e-3)
    norm = img / a.reshape((1, 1, -1) if img.ndim == 3 else ())
    t = 1 - omega * cv2.erode(norm.min(2) if norm.ndim == 3 else norm, k)
    gray = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255 if vis.ndim == 3 else img
    t = np.maximum(guided_filter(gray, t.astype(np.float32), radius, eps), t0)
    if img.ndim == 3:
        t, a = t[..., None], a.reshape(1, 1, -1)
    out = (img - a) / t + a
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
