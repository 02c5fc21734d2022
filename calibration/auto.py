"""Automatic VIS->IR registration from an ordinary scene pair, with no target.

`estimate_auto(vis, ir)` aligns polarity-free structure maps ("orient": locally normalised
gradient magnitude and the doubled gradient angle) in six steps: an initial guess, a coarse
rotation x scale x translation search, affine ECC on the best candidates, homography ECC
coarse to fine with `ecc_align`, and two last rounds weighted by local agreement.
`stability()` re-estimates with part of the VIS frame left out (the self-check). What each
step does, what was measured and what was rejected: docs/calibration.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import Calibration, CalibrationError, apply, corner_error, corners, today
from .score import alignment_score
from .target import to_gray

METHOD = "auto-grad-ecc"      # the `method` recorded in a calibration file it makes


@dataclass
class AutoConfig:
    """Settings of the automatic registration (defaults are the benchmarked ones)."""

    model: str = "homography"         # "homography" or "affine" (final ECC motion model)
    max_rotation_deg: float = 6.0     # coarse search half-range, degrees
    rotation_step_deg: float = 2.0    # coarse search step, degrees
    max_scale_change: float = 0.12    # coarse search half-range, relative (0.12 = +-12 %)
    scale_step: float = 0.04          # coarse search step, relative
    max_shift_frac: float = 0.12      # coarse search translation half-range, fraction of IR size
    coarse_long_side: int = 160       # px, the coarsest level (where the global search runs) has
    coarse_short_side: int = 96       # at least this long side and at least this short side
    fine_max_px: int = 350_000        # px: ECC stops at the first level this small (bounds the time
                                      # on big frames: TNO 768x576 ends at 384x288)
    peaks_per_map: int = 3            # translation peaks kept per (rotation, scale) NCC map
    coarse_ecc: int = 24              # best distinct NCC candidates refined by affine ECC (coarsest level)
    candidates: int = 3               # best of those by ECC correlation, refined on the finer levels
    robust_rounds: int = 2            # step 6: last ECC rounds on the finest level weighted by local
                                      # agreement (0 = off)
    robust_power: float = 2.0         # weight = max(local correlation, 0) ** robust_power
    robust_window: int = 31           # px of the finest level, window of that local correlation
    robust_inset: float = 0.06        # share of the IR frame's width/height per side that step 6 leaves out
    sigma_px: float = 0.7             # gradient smoothing at every level, px of that level
    norm_sigma_px: float = 8.0        # px, neighbourhood for local gradient normalisation
    ecc_iters: int = 60               # ECC iterations per level (max); "gn" stops on its own
                                      # after ~10-20 (the corners move < 0.02 px)
    ecc_eps: float = 1e-5             # ECC stop when the correlation gains less than this

    def __post_init__(self) -> None:
        if self.model not in ("homography", "affine"):
            raise CalibrationError(f"auto: model must be 'homography' or 'affine', got {self.model!r}")
        if self.coarse_ecc < 1 or self.candidates < 1 or self.peaks_per_map < 1:
            raise CalibrationError("auto: coarse_ecc, candidates and peaks_per_map must be >= 1")
        if self.robust_rounds < 0 or self.robust_power <= 0 or self.robust_window < 3 \
                or not 0.0 <= self.robust_inset < 0.5:
            raise CalibrationError(
                "auto: robust_rounds must be >= 0, robust_power > 0, robust_window >= 3 px and robust_inset "
                f"in [0, 0.5), got {self.robust_rounds!r}, {self.robust_power!r}, {self.robust_window!r} and "
                f"{self.robust_inset!r}")


def stretch(vis_size, ir_size) -> np.ndarray:
    """3x3 ir_from_vis that maps the VIS frame onto the IR frame (pixel centres kept)."""
    sx, sy = ir_size[0] / vis_size[0], ir_size[1] / vis_size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _level_scale(size, level_size) -> np.ndarray:
    """3x3 map from full-resolution px coords to the px coords of a resized level."""
    sx, sy = level_size[0] / size[0], level_size[1] / size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _pyramid_sizes(size, long_side: int, short_side: int) -> list[tuple[int, int]]:
    """Level sizes, full resolution first, halving while a level keeps its long side >=
    long_side and its short side >= short_side, then one level resized to the smallest size
    with both (unless the last halving is within 1.2x of it).

    Both bounds: RoadScene frames run from 1:1 to 3.7:1, and a wide frame only 43 px high
    leaves the search too little to match (docs/calibration.md).
    """
    def big_enough(w, h):
        return max(w, h) >= long_side and min(w, h) >= short_side

    sizes = [tuple(size)]
    while big_enough((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2):
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    w, h = sizes[-1]
    f = max(long_side / max(w, h), short_side / min(w, h))
    if f < 1 / 1.2:
        sizes.append((max(16, round(w * f)), max(16, round(h * f))))
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


def _norm_frame(size) -> np.ndarray:
    """3x3 map from px coords of a (w, h) frame to coords centred on it, half the long side = 1."""
    w, h = size
    s = 0.5 * max(w, h)
    return np.array([[1 / s, 0, -(w - 1) / (2 * s)], [0, 1 / s, -(h - 1) / (2 * s)], [0, 0, 1.0]])


class _EccProblem:
    """What every ecc_align iteration shares, in frame-centred coordinates scaled to +-1: the
    image with its gradients, where it may be sampled, the template and its pixel grid."""

    def __init__(self, template: np.ndarray, image: np.ndarray, mask: np.ndarray | None,
                 weight: np.ndarray | None, affine: bool):
        h, w = template.shape[:2]
        c = 1 if template.ndim == 2 else template.shape[2]
        hi, wi = image.shape[:2]
        self.size, self.c, self.affine = (w, h), c, affine
        self.n_t, self.n_i = _norm_frame((w, h)), _norm_frame((wi, hi))
        self.inv_ni = np.linalg.inv(self.n_i)
        self.s_i = 1.0 / self.n_i[0, 0]
        self.stack = self._image_stack(image.reshape(hi, wi, c))
        self.valid = self._sampling_mask(mask, (hi, wi))
        self.tmpl = np.ascontiguousarray(template.reshape(h, w, c).transpose(2, 0, 1))   # C x H x W
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self.xn = xs * np.float32(self.n_t[0, 0]) + np.float32(self.n_t[0, 2])        # H x W, in [-1, 1]
        self.yn = ys * np.float32(self.n_t[1, 1]) + np.float32(self.n_t[1, 2])
        self.corners_t = np.hstack([apply(self.n_t, corners((w, h))), np.ones((4, 1))])  # 4 x 3, normalised
        self.npar = 6 if affine else 8
        self.jac = np.empty((self.npar, c, h, w), np.float32)    # d(warped image)/d(parameter), channel-first
        self.sqrt_w = None if weight is None else np.sqrt(np.maximum(weight, 0)).astype(np.float32)

    def _image_stack(self, img: np.ndarray) -> np.ndarray:
        """H' x W' x 3C: the image and its gradients, warped at once."""
        hi, wi, c = img.shape
        # Image gradients per unit of normalised image coordinates (Sobel gain 8 removed).
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3).reshape(hi, wi, c) * np.float32(0.125 * self.s_i)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3).reshape(hi, wi, c) * np.float32(0.125 * self.s_i)
        return np.ascontiguousarray(np.concatenate([img, gx, gy], axis=2))

    @staticmethod
    def _sampling_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        """uint8 H'xW', nonzero where the image may be sampled.

        Only where the image, its 3x3 gradients and the bilinear interpolation between pixels
        all see data: 2 px inside every no-data edge and the frame border. Without this margin
        the step into the no-data fill (and the frame edge) pulls the warp: measured on a
        masked 320x256 pair, a 1.5 px shift was found 1.3 px off instead of 0.01 px.
        """
        valid = np.full(shape, 255, np.uint8) if mask is None else mask
        return cv2.erode(valid, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)

    def to_normalised(self, warp: np.ndarray) -> np.ndarray:
        """A 3x3 warp template px -> image px as the warp between normalised coordinates."""
        wn = self.n_i @ warp @ np.linalg.inv(self.n_t)
        wn = wn / wn[2, 2]
        if self.affine:
            wn[2] = [0.0, 0.0, 1.0]
        return wn

    def to_pixels(self, wn: np.ndarray) -> np.ndarray:
        """A warp between normalised coordinates as a 3x3 warp template px -> image px."""
        return self.inv_ni @ wn @ self.n_t

    def corner_move(self, wn_a: np.ndarray, wn_b: np.ndarray) -> float:
        """Largest distance, image px, between the template corners under two warps."""
        def corners_n(wn):
            p = self.corners_t @ wn.T
            return p[:, :2] / p[:, 2:]
        return float(np.abs(corners_n(wn_a) - corners_n(wn_b)).max()) * self.s_i

    def evaluate(self, wn: np.ndarray) -> tuple[float, np.ndarray | None] | None:
        """Correlation and the Gauss-Newton step at warp wn (None if no overlap)."""
        sampled = self._sample(wn)
        if sampled is None:
            return None
        sw, mf = sampled
        rv = mf.reshape(-1)
        n = float(rv @ rv)                         # the pixel count (sum of weights)
        if n <= 0:
            return None
        c = self.c
        iw = np.stack(sw[:c]) * mf                 # C x H x W
        t = self.tmpl * mf
        self._fill_jacobian(sw, mf, wn)
        return self._step(iw, t, rv, n)

    def _sample(self, wn: np.ndarray) -> tuple[list[np.ndarray], np.ndarray] | None:
        """The image stack warped onto the template (3C planes) and the float32 HxW mask of
        valid pixels times sqrt(weight); None when fewer than 16 pixels are valid."""
        w, h = self.size
        wpx = self.to_pixels(wn)
        warped = cv2.warpPerspective(self.stack, wpx, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        sw = cv2.split(warped.reshape(h, w, 3 * self.c))
        m = cv2.warpPerspective(self.valid, wpx, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        if int(np.count_nonzero(m)) < 16:
            return None
        mf = m.astype(np.float32)
        if self.sqrt_w is not None:
            mf *= self.sqrt_w                      # every product below is then weighted by weight
        return sw, mf

    def _fill_jacobian(self, sw: list[np.ndarray], mf: np.ndarray, wn: np.ndarray) -> None:
        """self.jac = d(warped image)/d(parameter) at wn, masked by mf."""
        c, xn, yn, jac = self.c, self.xn, self.yn, self.jac
        den = np.float32(wn[2, 0]) * xn + np.float32(wn[2, 1]) * yn + np.float32(1.0)
        inv_d = mf / den                          # 0 outside the valid area: masks everything below
        u = (np.float32(wn[0, 0]) * xn + np.float32(wn[0, 1]) * yn + np.float32(wn[0, 2])) / den
        v = (np.float32(wn[1, 0]) * xn + np.float32(wn[1, 1]) * yn + np.float32(wn[1, 2])) / den
        a = np.stack(sw[c:2 * c]) * inv_d          # d(image)/d(u) / den, masked
        b = np.stack(sw[2 * c:]) * inv_d
        q = -(a * u + b * v)
        for k, g in enumerate((a, b) if self.affine else (a, b, q)):  # (x, y, 1) times a, b; (x, y) times q
            np.multiply(g, xn, out=jac[3 * k])
            np.multiply(g, yn, out=jac[3 * k + 1])
            if k < 2:
                jac[3 * k + 2] = g

    def _step(self, iw: np.ndarray, t: np.ndarray, rv: np.ndarray,
              n: float) -> tuple[float, np.ndarray | None] | None:
        """Correlation of the masked warped image iw and template t, and ECC's Gauss-Newton
        step (3x3, to add to the warp; None when it would minimise)."""
        c, npar = self.c, self.npar
        hw = self.size[0] * self.size[1]
        j2 = self.jac.reshape(npar, -1)            # npar x CHW
        iwv, tv = iw.reshape(-1), t.reshape(-1)
        # Inner products over valid pixels, each channel centred: sum(xy) - sum(x) sum(y) / n.
        sj = (self.jac.reshape(npar * c, hw) @ rv).reshape(npar, c).astype(np.float64)
        si = (iw.reshape(c, hw) @ rv).astype(np.float64)
        st = (t.reshape(c, hw) @ rv).astype(np.float64)
        hess = (j2 @ j2.T).astype(np.float64) - sj @ sj.T / n
        j_i = (j2 @ iwv).astype(np.float64) - sj @ si / n
        j_t = (j2 @ tv).astype(np.float64) - sj @ st / n
        ii = float(iwv @ iwv) - float(si @ si) / n
        tt = float(tv @ tv) - float(st @ st) / n
        i_t = float(iwv @ tv) - float(si @ st) / n
        if ii <= 0 or tt <= 0:
            return None
        rho = i_t / math.sqrt(ii * tt)
        try:
            pinv = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            return None
        # ECC's closed-form photometric scale, then the Gauss-Newton step (the paper's eq. 29).
        lam_n = ii - j_i @ pinv @ j_i
        lam_d = i_t - j_t @ pinv @ j_i
        if lam_d <= 0:
            return rho, None                       # the step would minimise: stop here
        dp = np.zeros(8)
        dp[:npar] = pinv @ ((lam_n / lam_d) * j_t - j_i)
        return rho, np.array([[dp[0], dp[1], dp[2]], [dp[3], dp[4], dp[5]], [dp[6], dp[7], 0.0]])


def _ecc_climb(problem: _EccProblem, wn: np.ndarray, rho: float, step: np.ndarray | None, iters: int,
               eps: float) -> tuple[float, np.ndarray]:
    """Take Gauss-Newton steps from wn (correlation rho, next step `step`) while they raise the
    correlation; a step that lowers it is halved, at most 4 times. Returns (rho, wn) at the end.

    Stops when the frame corners move < 0.02 px, the gain is < eps, or after `iters` steps."""
    halvings = 0
    for _ in range(iters):
        if step is None:
            break
        trial = wn + step
        moved = problem.corner_move(trial, wn)
        res = problem.evaluate(trial)
        if res is None or res[0] < rho:
            # The correlation fell: the linearisation overshot. Halve the step, at most 4 times.
            halvings += 1
            if halvings > 4 or moved < 0.02:
                break
            step = step * 0.5
            continue
        halvings = 0
        gain = res[0] - rho
        wn, (rho, step) = trial, res            # only steps that raise the correlation are taken
        if moved < 0.02 or gain < eps:
            break
    return rho, wn


def ecc_align(template: np.ndarray, image: np.ndarray, warp: np.ndarray, iters: int, eps: float,
              mask: np.ndarray | None = None, affine: bool = False,
              weight: np.ndarray | None = None) -> tuple[float, np.ndarray] | None:
    """ECC alignment (Evangelidis & Psarakis 2008, forward additive, the algorithm of
    cv2.findTransformECC) of a homography (or affine) warp, with a step that never lowers the
    correlation. Returns (correlation, 3x3 warp template px -> image px), or None on no overlap.

    template: HxW or HxWxC float32; image: H'xW'[xC] float32 (same C); warp: 3x3 start;
    mask: uint8 H'xW', nonzero where the image holds data. weight: HxW float32 >= 0 in template
    coords, each pixel's weight in the correlation (a weighted ECC; None = all 1; step 6 of the
    module docstring). Each channel is centred on its own.

    Parameters live in frame-centred coordinates scaled to +-1 (a well-conditioned Gauss-Newton
    system in float64); a step that would lower the correlation is halved. It stops when the
    frame corners move < 0.02 px or the gain is < eps. Why not cv2.findTransformECC, whose
    iterates keep jumping on cross-modal maps: docs/calibration.md.
    """
    problem = _EccProblem(template, image, mask, weight, affine)
    wn = problem.to_normalised(warp)
    res = problem.evaluate(wn)
    if res is None:
        return None
    rho, wn = _ecc_climb(problem, wn, res[0], res[1], iters, eps)
    out = problem.to_pixels(wn)
    if not np.all(np.isfinite(out)) or abs(np.linalg.det(out)) < 1e-12:
        return None
    return float(rho), out / out[2, 2]


def edge_map(img: np.ndarray, cfg: AutoConfig) -> np.ndarray:
    """Contrast-polarity-free structure map of one float32 gray level image.

    3 channels ("orient"): the gradient magnitude divided by its local mean (Gaussian,
    norm_sigma_px, so a faint VIS edge and a strong LWIR edge weigh the same) times (cos 2t,
    sin 2t) of the gradient angle t, plus that normalised magnitude: doubled angles do not
    change when the contrast inverts. Returns HxWx3 float32.
    """
    g = cv2.GaussianBlur(img, (0, 0), cfg.sigma_px) if cfg.sigma_px > 0 else img
    dx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) * 0.125
    dy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) * 0.125
    # Not cv2.magnitude: its SIMD square root rounds the last bit differently depending on
    # where the buffers happen to sit in memory, so the same pair gave a (slightly) different
    # answer on a second call in the same process. numpy's sqrt is correctly rounded.
    mag = np.sqrt(dx * dx + dy * dy)
    norm = mag / (cv2.GaussianBlur(mag, (0, 0), cfg.norm_sigma_px) + 1.0)
    inv = norm / (mag * mag + 1e-6)
    return np.dstack([(dx * dx - dy * dy) * inv, 2 * dx * dy * inv, norm]).astype(np.float32)


def _frame_bands(gray: np.ndarray, tol: int = 2, frac: float = 0.95) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): how many rows/columns at each frame edge are one constant
    value (at least `frac` of the line within +-`tol` of its median), scanning inwards."""
    g = gray.astype(np.int16)
    out = []
    for lines in (g, g[::-1], g.T, g.T[::-1]):
        n = 0
        while n < len(lines) // 2:
            line = lines[n]
            if np.mean(np.abs(line - np.median(line)) <= tol) < frac:
                break
            n += 1
        out.append(n)
    return tuple(out)


def valid_mask(gray: np.ndarray) -> np.ndarray:
    """HxW bool: False where the frame holds no picture.

    Two kinds, both measured to drag the alignment: (1) zero-valued "no data" regions that
    touch the frame edge (a frame that was already warped or rectified has such fill); dark
    pixels inside the picture (not connected to the border) stay valid. (2) Constant bands
    along the frame edges, any value: some cameras (or the tools that cropped their frames)
    leave a white or dark frame, e.g. TNO's Bosnia and square_with_houses LWIR images have a
    255-valued frame 4-15 px wide, Farm's a 41-row band of 1s. The frame's inner edge is a
    strong straight gradient that nothing in the other camera matches, and the search locked on
    to it (corner errors of 5-10 px on those pairs before this mask).
    """
    ok = np.ones(gray.shape, bool)
    zero = (gray == 0).astype(np.uint8)
    if zero.any():
        n, labels = cv2.connectedComponents(zero, connectivity=4)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        border = border[border > 0]
        ok &= ~np.isin(labels, border)
    top, bottom, left, right = _frame_bands(gray)
    h, w = gray.shape
    ok[:top] = False
    ok[h - bottom:] = False
    ok[:, :left] = False
    ok[:, w - right:] = False
    return ok


def _agreement_weight(warp_lv: np.ndarray, level, cfg: AutoConfig) -> np.ndarray:
    """float32 HxW weights in the IR coords of one level for step 6: max(c, 0) ** robust_power,
    c = correlation of the two maps in `robust_window` px windows under `warp_lv` (that level's
    IR px -> VIS px), and 0 in a margin of `robust_inset` of the frame along each side.

    Regions only one camera shows, and other depth planes, then no longer pull the optimum;
    the weights are in IR coords, which every VIS placement shares (docs/calibration.md, step 5).
    """
    ve, re_, _ = level
    hi, wi = re_.shape[:2]
    b = re_.reshape(hi, wi, -1).astype(np.float32)
    a = cv2.warpPerspective(ve, warp_lv, (wi, hi),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).reshape(hi, wi, -1)
    k = (cfg.robust_window, cfg.robust_window)
    box = lambda x: cv2.boxFilter(x, -1, k)  # noqa: E731
    ma, mb = box(a), box(b)
    cov = (box(a * b) - ma * mb).sum(axis=2)
    va = (box(a * a) - ma * ma).sum(axis=2)
    vb = (box(b * b) - mb * mb).sum(axis=2)
    wgt = (np.maximum(cov / np.sqrt(np.maximum(va * vb, 1e-12)), 0.0) ** cfg.robust_power).astype(np.float32)
    dx, dy = int(round(cfg.robust_inset * wi)), int(round(cfg.robust_inset * hi))
    wgt[:dy], wgt[hi - dy:], wgt[:, :dx], wgt[:, wi - dx:] = 0.0, 0.0, 0.0, 0.0
    return wgt


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

    vis_e, ir_e: same-size float32 edge maps of one (coarse) level. Returns up to
    cfg.coarse_ecc distinct (score, warp), best first; warp is 3x3 ir->vis coords (the ECC
    convention). Each map contributes its `peaks_per_map` best translations: the right one is
    often a second peak of the right rotation/scale on cross-modal maps.
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
            for _ in range(cfg.peaks_per_map):
                _, score, _, loc = cv2.minMaxLoc(res)
                d = np.array([loc[0] - mx, loc[1] - my], dtype=np.float64)
                t = np.eye(3)
                t[:2, 2] = d
                out.append((float(score), w0 @ t))
                # suppress this peak's neighbourhood (+-2 px) before looking for the next one
                res[max(0, loc[1] - 2):loc[1] + 3, max(0, loc[0] - 2):loc[0] + 3] = -1.0
    out.sort(key=lambda p: -p[0])
    # Keep the best `coarse_ecc` that differ from every better one by >= 1.5 px (mean corner
    # move): neighbouring rotations/scales often peak at the same place.
    cs = corners((w, h))
    pts = np.stack([apply(wv, cs) for _, wv in out])          # K x 4 x 2
    kept: list[int] = []
    for k in range(len(out)):
        if not kept or np.min(np.linalg.norm(pts[kept] - pts[k], axis=2).mean(axis=1)) >= 1.5:
            kept.append(k)
            if len(kept) >= cfg.coarse_ecc:
                break
    return [out[k] for k in kept]


def estimate_auto(vis: np.ndarray, ir: np.ndarray, init: np.ndarray | None = None,
                  config: AutoConfig | None = None) -> Calibration:
    """Estimate ir_from_vis from one ordinary VIS/IR scene pair.

    vis: HxWx3 BGR or HxW uint8 (any size); ir: HxW uint8 (any size). init: optional 3x3
    ir_from_vis guess (default: stretch VIS frame onto IR frame). The residual around the guess
    may be up to ~8 % translation, ~5 deg rotation, ~10 % scale with the default search.
    Returns a Calibration with method "auto-grad-ecc score=<score>"; rms_px is NaN (an area-based fit has
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

    sizes = _pyramid_sizes(ir_size, cfg.coarse_long_side, cfg.coarse_short_side)
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

    finest = 0
    while finest < top and sizes[finest][0] * sizes[finest][1] > cfg.fine_max_px:
        finest += 1

    def refine(warp: np.ndarray, first: int, last: int = finest,
               weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """ECC from level `first` down to `last`; (last correlation, warp at full res).

        A level whose ECC fails or leaves the plausible range keeps the previous warp: ECC
        on cross-modal maps can run off to a degenerate warp that correlates a small area.
        `weight`: per-pixel weights in IR coords of a single level (step 6).
        """
        rho = -1.0
        for lv in range(first, last - 1, -1):
            ve, re_, vm = levels[lv]
            w_lv = _rescale(warp, scales[0], scales[lv])
            res = ecc_align(re_, ve, w_lv, cfg.ecc_iters, cfg.ecc_eps, vm, affine=cfg.model == "affine",
                            weight=weight)
            if res is None:
                continue
            cand = _rescale(res[1], scales[lv], scales[0])
            if _plausible(cand, ir_size, cfg):
                warp, rho = cand, res[0]
        return rho, warp

    # warps are 3x3 at full resolution, IR coords -> vis0 coords (the ECC convention)
    ve, re_, vm = levels[top]
    # Rank the coarse candidates by their correlation after affine ECC, not by the NCC of
    # the search: on night scenes the NCC scores are flat (0.18-0.20 for the best dozen)
    # and the right match sat at rank 7-40; after ECC it had the best correlation (e.g.
    # FLIR_09378: 0.262 against 0.230). cv2's ECC here: it is cheap at this small level,
    # and the finer levels settle what it leaves.
    starts: list[tuple[float, np.ndarray]] = []
    tol = 2.0 / scales[top][0, 0]
    for _, w in _coarse_search(ve, re_, cfg):
        res = _ecc(re_, ve, w, cv2.MOTION_AFFINE, cfg.ecc_iters, 1e-4, vm)
        if res is None:
            continue
        full = _rescale(res[1], scales[top], scales[0])
        # Candidates that converged to the same place (within 2 coarse px) count once.
        if _plausible(full, ir_size, cfg) and all(
                corner_error(full, o, ir_size) > tol for _, o in starts):
            starts.append((res[0], full))
    if not starts:
        raise CalibrationError("auto: no coarse candidate converged (images share too little structure)")
    starts = sorted(starts, key=lambda r: -r[0])[: cfg.candidates]
    # Keep the candidate with the best correlation one level above the finest: the coarse
    # level's correlation still ranks wrong matches first on some pairs, and only the
    # winner pays for the finest level.
    pick = min(finest + 1, top)
    if top - 1 >= pick:
        _, warp = max((refine(w, top - 1, pick) for _, w in starts), key=lambda r: r[0])
        done = pick
    else:
        _, warp = starts[0]
        done = top
    # The coarsest level only fitted an affine warp: the finest level always runs.
    _, warp = refine(warp, done - 1 if done > finest else finest)
    # Step 6: once or twice more on the finest level, each pixel weighted by how well the
    # two maps agree around it under the warp found so far (ecc_align takes the weights).
    for _ in range(cfg.robust_rounds):
        wgt = _agreement_weight(_rescale(warp, scales[0], scales[finest]), levels[finest], cfg)
        _, warp = refine(warp, finest, weight=wgt)

    residual = np.linalg.inv(warp)  # vis0 coords -> IR coords
    ir_from_vis = residual @ init
    ir_from_vis /= ir_from_vis[2, 2]
    if cfg.model == "affine":
        ir_from_vis[2, :2] = 0.0
    score = alignment_score(ir_from_vis, vg, ig)
    return Calibration(ir_from_vis=ir_from_vis, vis_size=vis_size, ir_size=ir_size, model=cfg.model,
                       rms_px=float("nan"), method=f"{METHOD} score={score:.3f}",
                       date=today())


STABLE_PX = 2.0  # stability() above this: the scene does not pin down one geometry to 2 px


def stability(vis: np.ndarray, ir: np.ndarray, calib: Calibration, init: np.ndarray | None = None,
              config: AutoConfig | None = None, cut: float = 0.12) -> list[float]:
    """How far the answer moves when part of the scene is out of view: a self-check of `calib`
    (an estimate_auto result for this pair) that needs no ground truth.

    The pair is estimated 4 more times, with `cut` (12 %) of the VIS frame blanked along the
    left, right, top and bottom edge (the no-data fill the method masks), from the same `init`.
    Returns the 4 mean corner distances (IR px) to `calib`. Above STABLE_PX (2 px): no single
    homography fits the whole scene (depth, lens distortion) or the two cameras share too
    little structure to pin one down, and a different view of the same site would give a
    different answer; check the overlay (`python -m calibration check`), calibrate on a scene
    with structure across the frame at the working distance, or use a target.

    How well it separates good answers from bad ones on real pairs: bench/bench_registration.py
    --stability, numbers in docs/calibration.md. Costs 4 estimates.
    """
    if not 0.0 < cut < 0.5:
        raise CalibrationError(f"stability: cut must be in (0, 0.5), got {cut!r}")
    h, w = vis.shape[:2]
    dx, dy = max(1, int(round(cut * w))), max(1, int(round(cut * h)))
    sides = [(slice(None), slice(0, dx)), (slice(None), slice(w - dx, w)),
             (slice(0, dy), slice(None)), (slice(h - dy, h), slice(None))]
    out = []
    for rows, cols in sides:
        part = vis.copy()
        part[rows, cols] = 0
        try:
            other = estimate_auto(part, ir, init=init, config=config).ir_from_vis
            out.append(corner_error(other, calib.ir_from_vis, calib.vis_size))
        except CalibrationError:
            out.append(math.inf)  # no answer at all without that part of the scene
    return out


__all__ = ["AutoConfig", "METHOD", "STABLE_PX", "ecc_align", "edge_map",
           "estimate_auto", "stability", "stretch", "valid_mask"]
