"""Automatic VIS->IR registration from an ordinary scene pair, with no target.

The chosen method ("grad-ecc" with "orient" maps, the default of `estimate(method="auto")`):
1. Bring VIS into IR geometry with an initial guess (default: stretch the VIS frame onto the
   IR frame, which is how side-by-side cameras with matched fields of view line up; or the
   current calibration when refining online). What is left is a residual geometry.
2. Work on polarity-free structure maps, not intensities: LWIR and VIS intensities are
   unrelated and often inverted, but both show the same outlines. "orient": locally normalised
   gradient magnitude, plus the doubled gradient angle (cos 2t, sin 2t) weighted by it; neither
   changes when the contrast inverts. No-data fill (zeros touching the frame edge) is masked.
3. Coarse global search on a small pyramid level (long side ~96 px): a grid of rotations and
   scales around the guess, each with the best translation from normalised cross-correlation
   (cv2.matchTemplate). ECC only converges from within a few px, and the residual can be
   8 % of the frame (tens of px) and 5 degrees.
4. ECC (cv2.findTransformECC: invariant to gain and offset between the maps), affine on the
   coarsest level from the best 3 candidates; each distinct result is refined with a
   homography down to one level above full resolution, the best correlation wins and is
   refined at full IR resolution. Levels whose result leaves 1.5x the searched range are
   discarded (cross-modal ECC can run off to a degenerate warp that correlates a small area).

Alternatives kept for measurement (`AutoConfig.strategy` / `.representation`; run them with
`python bench/bench_registration.py --repeat --strategies ... --representations ...`).
Measured with seed 0 on the RoadScene test split (23 pairs) / TNO (50 scenes) / the synthetic
street (20 pairs, exact truth). "repeat" = how well the known distortion is recovered (vs the
method's own answer on the undistorted pair; median px, share < 2 px), which is what the
method controls; the real pairs' own registration is off by 3-7 px (see docs/calibration.md):

    strategy/representation  RoadScene repeat  TNO repeat      synthetic error
    grad-ecc/orient          0.73 px, 78 %     1.02 px, 58 %   0.09 px, 100 %   <- chosen
    grad-ecc/grad-norm       1.22 px, 65 %     (not run)       (not run)
    grad-ecc/grad            6.22 px, 39 %     23.3 px, 24 %   1.00 px,  95 %
    ecc-local/orient         1.78 px, 52 %     2.69 px, 46 %   0.10 px,  70 %
    features (SIFT, MAGSAC)  fails, 0 %        fails, 0 %      0.91 px,  90 %
    features-ecc             fails, 30 %       fails, 4 %      0.09 px, 100 %

Why: SIFT descriptors of VIS and LWIR rarely agree (too few consistent matches on real
pairs); local ECC fails whenever the residual exceeds its few-px basin; plain gradient
magnitude lets the strongest edges of one modality (which the other may lack) dominate, and
normalising it helps, but only the doubled-angle channels tell a road marking from a kerb
next to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import Calibration, CalibrationError, apply, corners, today
from .score import alignment_score
from .target import to_gray

STRATEGIES = ("grad-ecc", "ecc-local", "features", "features-ecc")
REPRESENTATIONS = ("orient", "grad-norm", "grad")


@dataclass
class AutoConfig:
    """Settings of the automatic registration (defaults are the benchmarked ones)."""

    strategy: str = "grad-ecc"        # one of STRATEGIES
    model: str = "homography"         # "homography" or "affine" (final ECC motion model)
    max_rotation_deg: float = 6.0     # coarse search half-range, degrees
    rotation_step_deg: float = 2.0    # coarse search step, degrees
    max_scale_change: float = 0.12    # coarse search half-range, relative (0.12 = +-12 %)
    scale_step: float = 0.04          # coarse search step, relative
    max_shift_frac: float = 0.12      # coarse search translation half-range, fraction of IR size
    coarse_long_side: int = 96        # px, long side of the coarsest pyramid level
    fine_long_side: int = 0           # px, ECC stops at the first level this small (0 = full res)
    candidates: int = 3               # coarse candidates refined by ECC on the coarsest level
    sigma_px: float = 1.0             # gradient smoothing at every level, px of that level
    representation: str = "orient"    # "grad" | "grad-norm" | "orient": what ECC aligns
    norm_sigma_px: float = 8.0        # px, neighbourhood for local gradient normalisation
    ecc_iters: int = 60               # ECC iterations per level (max), coarse levels
    ecc_fine_iters: int = 15          # ECC iterations (max) on the two finest levels: they start
                                      # within ~1 px, and each iteration costs 4x the level above
    single_channel_above_px: int = 0  # >0: a full-res level bigger than this (px) aligns only
                                      # the magnitude channel, 4.5x faster (0 = never)
    ecc_eps: float = 1e-5             # ECC stop when the correlation gains less than this

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CalibrationError(f"auto: strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.representation not in REPRESENTATIONS:
            raise CalibrationError(f"auto: representation must be one of {REPRESENTATIONS}, "
                                   f"got {self.representation!r}")
        if self.model not in ("homography", "affine"):
            raise CalibrationError(f"auto: model must be 'homography' or 'affine', got {self.model!r}")


def stretch(vis_size, ir_size) -> np.ndarray:
    """3x3 ir_from_vis that maps the VIS frame onto the IR frame (pixel centres kept)."""
    sx, sy = ir_size[0] / vis_size[0], ir_size[1] / vis_size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _level_scale(size, level_size) -> np.ndarray:
    """3x3 map from full-resolution px coords to the px coords of a resized level."""
    sx, sy = level_size[0] / size[0], level_size[1] / size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _pyramid_sizes(size, coarse_long_side: int) -> list[tuple[int, int]]:
    """Level sizes, full resolution first, halving until the long side is <= coarse_long_side."""
    sizes = [tuple(size)]
    while max(sizes[-1]) > coarse_long_side * 1.5 and min(sizes[-1]) > 32:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def _rescale(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Move a warp from level-a coords to level-b coords (a, b: full-res -> level maps)."""
    m = b @ np.linalg.inv(a)
    out = m @ w @ np.linalg.inv(m)
    return out / out[2, 2]


def _ecc(template: np.ndarray, image: np.ndarray, warp: np.ndarray, motion: int, iters: int,
         eps: float, mask: np.ndarray | None = None) -> tuple[float, np.ndarray] | None:
    """One cv2.findTransformECC run; warp (3x3, template coords -> image coords) or None.

    mask: uint8 HxW of `image`, nonzero where it holds data. ECC's own pre-blur is off
    (size 1): the edge maps are smoothed already, and blurring here would smear no-data zeros
    into valid pixels and bias the result by a pixel or more.
    """
    w = warp.astype(np.float32)
    if motion != cv2.MOTION_HOMOGRAPHY:
        w = w[:2].copy()
    try:
        rho, w = cv2.findTransformECC(template, image, w, motion,
                                      (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iters, eps),
                                      mask, 1)
    except cv2.error:
        return None  # ECC raises when it diverges or the images lose overlap
    w = w.astype(np.float64)
    if w.shape[0] == 2:
        w = np.vstack([w, [0.0, 0.0, 1.0]])
    if not np.all(np.isfinite(w)) or abs(np.linalg.det(w)) < 1e-9:
        return None
    return float(rho), w / w[2, 2]


def edge_map(img: np.ndarray, cfg: AutoConfig) -> np.ndarray:
    """Contrast-polarity-free structure map of one float32 gray level image.

    "grad": gradient magnitude. "grad-norm": gradient magnitude divided by its local mean
    (Gaussian, norm_sigma_px), so a faint VIS edge and a strong LWIR edge weigh the same.
    "orient": 3 channels, normalised magnitude times (cos 2t, sin 2t) of the gradient angle t,
    plus the normalised magnitude: doubled angles do not change when the contrast inverts.
    Returns HxW or HxWx3 float32.
    """
    g = cv2.GaussianBlur(img, (0, 0), cfg.sigma_px) if cfg.sigma_px > 0 else img
    dx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) * 0.125
    dy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) * 0.125
    mag = cv2.magnitude(dx, dy)
    if cfg.representation == "grad":
        return mag
    norm = mag / (cv2.GaussianBlur(mag, (0, 0), cfg.norm_sigma_px) + 1.0)
    if cfg.representation == "grad-norm":
        return norm
    inv = norm / (mag * mag + 1e-6)
    return np.dstack([(dx * dx - dy * dy) * inv, 2 * dx * dy * inv, norm]).astype(np.float32)


def valid_mask(gray: np.ndarray) -> np.ndarray:
    """HxW bool: False on zero-valued "no data" regions that touch the frame edge.

    A frame that was already warped or rectified has such fill; its edge against the picture
    is a strong false gradient that drags the alignment by pixels, so it is masked. Dark
    pixels inside the picture (not connected to the border) stay valid.
    """
    zero = (gray == 0).astype(np.uint8)
    if not zero.any():
        return np.ones(gray.shape, bool)
    n, labels = cv2.connectedComponents(zero, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    return ~np.isin(labels, border)


def _corner_dist(a: np.ndarray, b: np.ndarray, size) -> float:
    """Mean distance (px) between where two warps put the corners of a (w, h) frame."""
    c = corners(size)
    return float(np.mean(np.linalg.norm(apply(a, c) - apply(b, c), axis=1)))


def _plausible(warp: np.ndarray, size, cfg: AutoConfig) -> bool:
    """Is a residual warp (IR -> vis0 coords) within 1.5x the searched range?

    Corner moves beyond (shift + scale + rotation ranges) x half-diagonal x 1.5, or a frame
    area that changes by more than 2x the scale range, mean ECC ran away.
    """
    w, h = size
    c = corners(size)
    p = apply(warp, c)
    if not np.all(np.isfinite(p)):
        return False
    den = np.hstack([c, np.ones((4, 1))]) @ warp[2]
    if np.any(den <= 0):
        return False  # the frame folds through the horizon
    half_diag = 0.5 * math.hypot(w, h)
    reach = (cfg.max_shift_frac + cfg.max_scale_change + math.sin(math.radians(cfg.max_rotation_deg)))
    if np.max(np.linalg.norm(p - c, axis=1)) > 1.5 * reach * half_diag:
        return False
    area = 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1)))
    ratio = area / ((w - 1) * (h - 1))
    return (1 - 2 * cfg.max_scale_change) ** 2 <= ratio <= (1 + 2 * cfg.max_scale_change) ** 2


def _coarse_search(vis_e: np.ndarray, ir_e: np.ndarray, cfg: AutoConfig) -> list[tuple[float, np.ndarray]]:
    """Grid over rotation x scale about the centre, best translation for each by NCC.

    vis_e, ir_e: same-size float32 edge maps of one (coarse) level. Returns (score, warp)
    sorted best first; warp is 3x3 ir->vis coords (the ECC convention).
    """
    h, w = ir_e.shape[:2]
    mx, my = int(round(cfg.max_shift_frac * w)), int(round(cfg.max_shift_frac * h))
    templ = ir_e[my:h - my, mx:w - mx]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    n_rot = int(round(cfg.max_rotation_deg / cfg.rotation_step_deg))
    n_sc = int(round(cfg.max_scale_change / cfg.scale_step))
    out = []
    for i in range(-n_rot, n_rot + 1):
        a = math.radians(i * cfg.rotation_step_deg)
        for j in range(-n_sc, n_sc + 1):
            s = 1.0 + j * cfg.scale_step
            # w0 maps IR coords to VIS coords: rotate/scale about the centre.
            r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            w0 = np.eye(3)
            w0[:2, :2] = r
            w0[:2, 2] = c - r @ c
            warped = cv2.warpPerspective(vis_e, w0, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            res = cv2.matchTemplate(warped, templ, cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(res)
            d = np.array([loc[0] - mx, loc[1] - my], dtype=np.float64)
            t = np.eye(3)
            t[:2, 2] = d
            out.append((float(score), w0 @ t))
    out.sort(key=lambda p: -p[0])
    return out


def _features(vis_e: np.ndarray, ir_e: np.ndarray) -> np.ndarray | None:
    """SIFT on 8-bit edge maps; returns 3x3 ir->vis warp (ECC convention) or None."""
    def u8(e):
        e = e if e.ndim == 2 else e[..., -1]
        return cv2.normalize(np.sqrt(e), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    sift = cv2.SIFT_create(nfeatures=2000)
    kv, dv = sift.detectAndCompute(u8(vis_e), None)
    ki, di = sift.detectAndCompute(u8(ir_e), None)
    if dv is None or di is None or len(kv) < 8 or len(ki) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(di, dv, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 8:
        return None
    src = np.float32([ki[m.queryIdx].pt for m in good])
    dst = np.float32([kv[m.trainIdx].pt for m in good])
    w, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 3.0, maxIters=5000, confidence=0.999)
    if w is None or mask is None or mask.sum() < 8:
        return None
    return w / w[2, 2]


def estimate_auto(vis: np.ndarray, ir: np.ndarray, init: np.ndarray | None = None,
                  config: AutoConfig | None = None) -> Calibration:
    """Estimate ir_from_vis from one ordinary VIS/IR scene pair.

    vis: HxWx3 BGR or HxW uint8 (any size); ir: HxW uint8 (any size). init: optional 3x3
    ir_from_vis guess (default: stretch VIS frame onto IR frame). The residual around the guess
    may be up to ~8 % translation, ~5 deg rotation, ~10 % scale with the default search.
    Returns a Calibration with method "auto-<strategy>"; rms_px is NaN (an area-based fit has
    no point residuals; the gradient-correlation score is appended to `method`).
    Raises CalibrationError when no alignment is found.
    """
    cfg = config or AutoConfig()
    vg, ig = to_gray(vis), to_gray(ir)
    vis_size, ir_size = (vg.shape[1], vg.shape[0]), (ig.shape[1], ig.shape[0])
    init = stretch(vis_size, ir_size) if init is None else np.asarray(init, np.float64)
    # VIS in IR geometry under the guess; area-averaged when shrinking so fine texture does
    # not alias into false edges.
    calib0 = Calibration(init, vis_size, ir_size)
    vis0 = calib0.warp(vg).astype(np.float32)
    irf = ig.astype(np.float32)
    # Where each image holds data, in IR geometry: VIS no-data fill, and IR pixels the VIS
    # frame does not reach under the guess.
    vis_ok = cv2.warpPerspective(valid_mask(vg).astype(np.uint8), init, ir_size, flags=cv2.INTER_NEAREST)
    ir_ok = valid_mask(ig).astype(np.uint8)

    sizes = _pyramid_sizes(ir_size, cfg.coarse_long_side)
    scales = [_level_scale(ir_size, s) for s in sizes]
    levels = []  # per level: (VIS edges, IR edges, VIS valid mask uint8)
    for s in sizes:
        same = s == ir_size
        v = vis0 if same else cv2.resize(vis0, s, interpolation=cv2.INTER_AREA)
        r = irf if same else cv2.resize(irf, s, interpolation=cv2.INTER_AREA)
        # Drop a margin of 2 sigma + 2 px inside each no-data edge: the smoothed step lives there.
        k = 2 * int(math.ceil(2 * cfg.sigma_px + 2)) + 1
        kernel = np.ones((k, k), np.uint8)
        vm = cv2.erode(vis_ok if same else cv2.resize(vis_ok, s, interpolation=cv2.INTER_NEAREST), kernel)
        im = cv2.erode(ir_ok if same else cv2.resize(ir_ok, s, interpolation=cv2.INTER_NEAREST), kernel)
        ve, re_ = edge_map(v, cfg), edge_map(r, cfg)
        ve = ve * (vm if ve.ndim == 2 else vm[..., None])
        re_ = re_ * (im if re_.ndim == 2 else im[..., None])
        levels.append((ve, re_, vm))
    top = len(sizes) - 1
    final_motion = cv2.MOTION_HOMOGRAPHY if cfg.model == "homography" else cv2.MOTION_AFFINE

    finest = 0
    if cfg.fine_long_side:
        while finest < top and max(sizes[finest]) > cfg.fine_long_side:
            finest += 1

    def refine(warp: np.ndarray, first: int, last: int = finest) -> tuple[float, np.ndarray]:
        """ECC from level `first` down to `last`; (last correlation, warp at full res).

        A level whose ECC fails or leaves the plausible range keeps the previous warp: ECC
        on cross-modal maps can run off to a degenerate warp that correlates a small area.
        """
        rho = -1.0
        for lv in range(first, last - 1, -1):
            ve, re_, vm = levels[lv]
            w_lv = _rescale(warp, scales[0], scales[lv])
            motion = cv2.MOTION_AFFINE if (lv == top and cfg.strategy == "ecc-local") else final_motion
            iters = cfg.ecc_fine_iters if lv <= finest + 1 and lv < top else cfg.ecc_iters
            if (cfg.single_channel_above_px and lv == finest and lv < top and ve.ndim == 3
                    and ve.shape[0] * ve.shape[1] > cfg.single_channel_above_px):
                # A speed option, off by default: measured with 250_000 on TNO (768x576), the
                # time per pair fell 2.2 -> 0.9 s but the recovery got worse (repeat median
                # 0.92 -> 1.78 px, < 2 px on 60 -> 50 % of scenes); RoadScene with magnitude
                # only at full resolution repeats to 1.1 px instead of 0.73 px.
                ve, re_ = np.ascontiguousarray(ve[..., -1]), np.ascontiguousarray(re_[..., -1])
            res = _ecc(re_, ve, w_lv, motion, iters, cfg.ecc_eps, vm)
            if res is None:
                continue
            cand = _rescale(res[1], scales[lv], scales[0])
            if _plausible(cand, ir_size, cfg):
                warp, rho = cand, res[0]
        return rho, warp

    # warps are 3x3 at full resolution, IR coords -> vis0 coords (the ECC convention)
    if cfg.strategy in ("features", "features-ecc"):
        warp = _features(levels[0][0], levels[0][1])
        if warp is None or not _plausible(warp, ir_size, cfg):
            raise CalibrationError("auto: features: too few consistent SIFT matches between VIS and IR")
        if cfg.strategy == "features-ecc":
            _, warp = refine(warp, 0)
    elif cfg.strategy == "grad-ecc":
        ve, re_, vm = levels[top]
        starts: list[tuple[float, np.ndarray]] = []
        for _, w in _coarse_search(ve, re_, cfg)[: cfg.candidates]:
            res = _ecc(re_, ve, w, cv2.MOTION_AFFINE, cfg.ecc_iters, 1e-4, vm)
            if res is None:
                continue
            full = _rescale(res[1], scales[top], scales[0])
            # Candidates that converged to the same place (within 2 coarse px) are refined once.
            tol = 2.0 / scales[top][0, 0]
            if _plausible(full, ir_size, cfg) and all(
                    _corner_dist(full, o, ir_size) > tol for _, o in starts):
                starts.append((res[0], full))
        if not starts:
            raise CalibrationError("auto: no coarse candidate converged (images share too little structure)")
        # Keep the candidate with the best correlation one level above the finest: the coarse
        # level's correlation ranks wrong matches first too often on cross-modal pairs, and
        # only the winner pays for the full-resolution level.
        pick = min(finest + 1, top)
        if top - 1 >= pick:
            _, warp = max((refine(w, top - 1, pick) for _, w in starts), key=lambda r: r[0])
            done = pick
        else:
            _, warp = max(starts, key=lambda r: r[0])
            done = top
        # The coarsest level only fitted an affine warp: the finest level always runs.
        _, warp = refine(warp, done - 1 if done > finest else finest)
    else:  # ecc-local
        rho, warp = refine(np.eye(3), top)
        if rho < -0.5:
            raise CalibrationError("auto: ECC did not converge")

    residual = np.linalg.inv(warp)  # vis0 coords -> IR coords
    ir_from_vis = residual @ init
    ir_from_vis /= ir_from_vis[2, 2]
    if cfg.model == "affine":
        ir_from_vis[2, :2] = 0.0
    score = alignment_score(ir_from_vis, vg, ig)
    return Calibration(ir_from_vis=ir_from_vis, vis_size=vis_size, ir_size=ir_size, model=cfg.model,
                       rms_px=float("nan"), method=f"auto-{cfg.strategy} score={score:.3f}",
                       date=today())


__all__ = ["AutoConfig", "REPRESENTATIONS", "STRATEGIES", "edge_map", "estimate_auto", "stretch", "valid_mask"]
