"""Image-fusion quality metrics, implemented from their published definitions (numpy + OpenCV).

Conventions shared by every function here:
- Images are gray ``HxW`` arrays, ``uint8`` or floating point on the 0..255 scale (a float image
  in 0..1 must be multiplied by 255 first: nothing here guesses the scale). A colour ``HxWx3``
  array is taken as BGR and reduced to its BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B
  (for uint8 exactly what ``cv2.cvtColor(..., COLOR_BGR2GRAY)`` returns, rounded like MATLAB's
  ``rgb2gray``), except in :func:`psnr`, which compares every channel. ``HxWx1`` is gray.
- Arguments of one call must have the same height and width.
- Bad input raises :class:`lmfusion.errors.InputError` (a ``ValueError``) with a one-line
  message naming the argument and what was expected.
- Results are Python floats. Histogram-based metrics (EN, MI) round float input to the nearest
  integer grey level 0..255 and use 256 bins, as the MATLAB ``imhist`` of a uint8 image does.

Fusion metrics take the two sources and the fused image as ``(a, b, fused)`` (VIFB's order:
``a`` = visible, ``b`` = infrared). Higher is better for all of them.

| key  | function                 | range                          | reference |
|------|--------------------------|--------------------------------|-----------|
| EN   | :func:`entropy`          | 0..8 bits                      | Shannon 1948 / Roberts et al. 2008 |
| SD   | :func:`std_dev`          | 0..127.5                       | Rao 1997 |
| SF   | :func:`spatial_frequency`| >= 0 (grey levels)             | Eskicioglu & Fisher 1995 |
| AG   | :func:`average_gradient` | >= 0 (grey levels / px)        | Cui et al. 2015 |
| MI   | :func:`fusion_mi`        | 0..16 bits (two sources)       | Qu et al. 2002 |
| VIF  | :func:`fusion_vif`       | >= 0, ~0..2 (two sources)      | Sheikh & Bovik 2006 (VIFp) |
| Qabf | :func:`qabf`             | 0..~0.975                      | Xydeas & Petrovic 2000 |
| SSIM | :func:`ssim`             | -1..1                          | Wang et al. 2004 |
| PSNR | :func:`psnr`             | dB, inf for identical images   | peak 255 |
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import InputError

__all__ = [
    "luminance", "entropy", "std_dev", "spatial_frequency", "average_gradient",
    "mutual_information", "fusion_mi", "vif_pixel", "fusion_vif", "qabf", "ssim", "psnr",
    "fusion_metrics", "reference_metrics",
]

# BT.601 luma weights in BGR channel order (the order OpenCV images use).
_Y_FROM_BGR = np.array([0.114, 0.587, 0.299])


def luminance(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Gray ``HxW`` float64 view of ``img`` on the 0..255 scale.

    ``img``: ``HxW`` or ``HxWx1`` gray, or ``HxWx3`` BGR; ``uint8`` or floating point in 0..255.
    Colour becomes BT.601 luma Y (uint8 input: OpenCV's rounded BGR2GRAY, as MATLAB rgb2gray).
    Raises :class:`InputError` naming ``name`` for any other dtype or shape.
    """
    arr = np.asarray(img)
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name}: expected a uint8 or float image on the 0..255 scale, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 3:
        if arr.dtype == np.uint8:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
        else:
            arr = arr.astype(np.float64) @ _Y_FROM_BGR
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"{name}: expected an HxW gray or HxWx3 BGR image (H, W >= 2), got shape {np.shape(img)}")
    return arr.astype(np.float64, copy=False)


def _same_size(**images: np.ndarray) -> list[np.ndarray]:
    """Luminance of each named image, after checking that all have the same H and W."""
    grays = [luminance(v, k) for k, v in images.items()]
    shapes = {g.shape for g in grays}
    if len(shapes) > 1:
        desc = ", ".join(f"{k} {np.shape(v)}" for k, v in images.items())
        raise InputError(f"images must have the same height and width: {desc}")
    return grays


def _levels(gray: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 (int64) of a float64 gray image, for 256-bin histograms."""
    return np.clip(np.rint(gray), 0, 255).astype(np.int64)


def _entropy_of_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


# --------------------------------------------------------------------------- no-reference metrics

def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy of the 256-bin grey-level histogram, in bits.

    EN = -sum_l p_l log2 p_l, p_l = fraction of pixels at grey level l (float input rounded to
    the nearest level). 0 for a constant image, 1 for a two-level 50/50 image, 8 at most.
    Reference: J. W. Roberts, J. van Aardt, F. Ahmed, "Assessment of image fusion procedures
    using entropy, image quality, and multispectral classification", J. Appl. Remote Sens. 2008.
    """
    lv = _levels(luminance(img))
    return _entropy_of_counts(np.bincount(lv.ravel(), minlength=256))


def std_dev(img: np.ndarray) -> float:
    """SD: population standard deviation of the grey levels, sqrt(mean((F - mean F)^2)).

    Range 0..127.5 for 0..255 images (127.5: half the pixels 0, half 255). Measures contrast.
    Reference: Y.-J. Rao, "In-fibre Bragg grating sensors", Meas. Sci. Technol. 1997 (as cited by
    the VIFB benchmark, Zhang et al. CVPRW 2020, whose metricsSd divides by M*N as here).
    """
    return float(luminance(img).std())


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), in grey levels.

    RF^2 = 1/(M N) sum_{i=1..M} sum_{j=2..N} (F[i,j] - F[i,j-1])^2 (row frequency),
    CF^2 = 1/(M N) sum_{i=2..M} sum_{j=1..N} (F[i,j] - F[i-1,j])^2 (column frequency);
    both divide by the full M*N as the definition (and VIFB's metricsSpatial_frequency) do.
    0 for a constant image; a horizontal ramp of slope c gives c * sqrt((N-1)/N).
    Reference: A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance",
    IEEE Trans. Communications 43(12), 1995.
    """
    f = luminance(img)
    n = f.size
    rf2 = np.square(np.diff(f, axis=1)).sum() / n
    cf2 = np.square(np.diff(f, axis=0)).sum() / n
    return float(math.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean local gradient magnitude, in grey levels per pixel.

    AG = 1/((M-1)(N-1)) sum_{i<M, j<N} sqrt(((F[i+1,j]-F[i,j])^2 + (F[i,j+1]-F[i,j])^2) / 2),
    forward differences over the (M-1)x(N-1) pixels that have both neighbours: the published
    formula. (VIFB's metricsAvg_gradient uses MATLAB ``gradient``, i.e. central differences over
    the whole image, and so differs slightly on textured images.) 0 for a constant image; a ramp
    of slope c along one axis gives c / sqrt(2).
    Reference: G. Cui, H. Feng, Z. Xu, Q. Li, Y. Chen, "Detail preserved fusion of visible and
    infrared images using regional saliency extraction and multi-scale image decomposition",
    Optics Communications 341, 2015.
    """
    f = luminance(img)
    dx = f[:-1, 1:] - f[:-1, :-1]
    dy = f[1:, :-1] - f[:-1, :-1]
    return float(np.sqrt((dx * dx + dy * dy) / 2.0).mean())


# --------------------------------------------------------------------------- information metrics

def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X, Y) in bits, from the 256x256 joint grey-level histogram.

    MI = sum_{u,v} p(u,v) log2(p(u,v) / (p(u) p(v))) = H(X) + H(Y) - H(X,Y); so MI(X, X) = EN(X).
    Float input is rounded to integer grey levels. Range 0..8 bits.
    """
    gx, gy = _same_size(x=x, y=y)
    lx, ly = _levels(gx).ravel(), _levels(gy).ravel()
    joint = np.bincount(lx * 256 + ly, minlength=256 * 256).reshape(256, 256)
    return (_entropy_of_counts(joint.sum(axis=1)) + _entropy_of_counts(joint.sum(axis=0))
            - _entropy_of_counts(joint.ravel()))


def fusion_mi(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """MI of a fusion: MI(A, F) + MI(B, F), in bits (0..16), 256-bin histograms.

    Reference: G. Qu, D. Zhang, P. Yan, "Information measure for performance of image fusion",
    Electronics Letters 38(7), 2002.
    """
    ga, gb, gf = _same_size(a=a, b=b, fused=fused)
    return mutual_information(ga, gf) + mutual_information(gb, gf)


# --------------------------------------------------------------------------- VIF

_VIF_MIN_SIDE = 41  # smallest H, W for which all four VIF scales keep at least one valid pixel
_VIF_SIGMA_NSQ = 2.0  # variance of the visual noise (HVS model), the reference code's value
_VIF_EPS = 1e-10


def _gauss_1d(n: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of n taps; its outer product is MATLAB ``fspecial('gaussian')``."""
    return cv2.getGaussianKernel(n, sigma, cv2.CV_64F)


def _filter_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(k k^T, img, 'valid')`` for a symmetric separable kernel: filter, then crop
    the (n-1)/2 border whose values would depend on padding."""
    r = (len(k) - 1) // 2
    out = cv2.sepFilter2D(img, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    return out[r:out.shape[0] - r, r:out.shape[1] - r]


def vif_pixel(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain multiscale VIF (VIFp) of ``dist`` against ``ref``, Sheikh & Bovik.

    A line-for-line port of the authors' ``vifp_mscale.m``: four scales s = 1..4 with Gaussian
    windows of N = 2^(5-s)+1 taps and sigma N/5; from scale 2 on, both images are low-passed with
    that window ('valid') and subsampled by 2. Per scale, local means/variances/covariance give
    the gain g = s12/s1^2 and distortion variance sv^2 = s2^2 - g s12 (with the reference's
    clamping); VIF = sum log10(1 + g^2 s1^2 / (sv^2 + sigma_n^2)) / sum log10(1 + s1^2 / sigma_n^2)
    over all scales and positions, sigma_n^2 = 2. VIF(x, x) = 1; blur, noise lower it; contrast
    enhancement can push it above 1. NaN when ``ref`` is constant (no information to keep).
    Both images: same size, at least 41x41 (smaller leaves no valid pixel at scale 4).
    Reference: H. R. Sheikh, A. C. Bovik, "Image information and visual quality", IEEE Trans.
    Image Processing 15(2), 2006.
    """
    r, d = _same_size(ref=ref, dist=dist)
    if min(r.shape) < _VIF_MIN_SIDE:
        raise InputError(f"vif: images must be at least {_VIF_MIN_SIDE}x{_VIF_MIN_SIDE}, got shape {r.shape}")
    eps = _VIF_EPS
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        k = _gauss_1d(n, n / 5.0)
        if scale > 1:
            r = _filter_valid(r, k)[::2, ::2]
            d = _filter_valid(d, k)[::2, ::2]
        mu1, mu2 = _filter_valid(r, k), _filter_valid(d, k)
        s1 = _filter_valid(r * r, k) - mu1 * mu1
        s2 = _filter_valid(d * d, k) - mu2 * mu2
        s12 = _filter_valid(r * d, k) - mu1 * mu2
        s1 = np.maximum(s1, 0.0)
        s2 = np.maximum(s2, 0.0)
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        # The reference's clamping, in its order: flat reference, flat distorted, negative gain.
        flat1 = s1 < eps
        g[flat1] = 0.0
        sv[flat1] = s2[flat1]
        s1[flat1] = 0.0
        flat2 = s2 < eps
        g[flat2] = 0.0
        sv[flat2] = 0.0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, eps)
        num += np.log10(1.0 + g * g * s1 / (sv + _VIF_SIGMA_NSQ)).sum()
        den += np.log10(1.0 + s1 / _VIF_SIGMA_NSQ).sum()
    return float(num / den) if den > 0 else float("nan")


def fusion_vif(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """VIF of a fusion: VIFp(A, F) + VIFp(B, F) (see :func:`vif_pixel`).

    This is the "VIF" most infrared/visible fusion papers report (the sum of Sheikh & Bovik's
    pixel-domain VIF over the two sources, as in the evaluation code of e.g. SeAFusion and
    PIAFusion), not Han et al.'s VIFF (Information Fusion 14(2), 2013), which is a different
    formula. Range about 0..2; higher keeps more of the sources' visual information.
    """
    ga, gb, gf = _same_size(a=a, b=b, fused=fused)
    return vif_pixel(ga, gf) + vif_pixel(gb, gf)


# --------------------------------------------------------------------------- Qabf

# Xydeas & Petrovic's sigmoid constants (edge strength g, orientation alpha) and weight exponent.
_QG = (0.9994, -15.0, 0.5)   # Gamma_g, kappa_g, sigma_g
_QA = (0.9879, -22.0, 0.8)   # Gamma_alpha, kappa_alpha, sigma_alpha
_QL = 1.0


def _sobel(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength g and orientation alpha = atan(s_y / s_x) (pi/2 where s_x = 0) of 3x3 Sobel.

    s_x, s_y follow the sign convention of the widely used MATLAB code (``conv2`` with
    [-1 0 1; -2 0 2; -1 0 1] and [1 2 1; 0 0 0; -1 -2 -1]), i.e. s_x = -dF/dx, s_y = +dF/dy in
    OpenCV's terms. The sign only matters next to pixels with s_x = 0, whose pi/2 would
    otherwise sit at the opposite end of the atan range from their neighbours.
    Mirrored borders (not MATLAB conv2's zeros) so a flat image has no edges along its frame.
    """
    sx = -cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    sy = cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    g = np.hypot(sx, sy)
    flat_x = sx == 0
    alpha = np.arctan(sy / np.where(flat_x, 1.0, sx))
    alpha[flat_x] = np.pi / 2
    return g, alpha


def _edge_preservation(g_x, a_x, g_f, a_f) -> np.ndarray:
    """Q^{XF} per pixel: how much of source X's edge strength and orientation F keeps."""
    lo, hi = np.minimum(g_x, g_f), np.maximum(g_x, g_f)
    # Relative strength: g_F/g_X if g_X > g_F else g_X/g_F (= 1 when equal). Where both are 0
    # the value is irrelevant (the pixel's weight g_X^L is 0); use 0 to avoid 0/0.
    rel_g = np.divide(lo, hi, out=np.zeros_like(hi), where=hi > 0)
    rel_a = 1.0 - np.abs(a_x - a_f) / (np.pi / 2)
    gg, kg, sg = _QG
    ga, ka, sa = _QA
    return gg / (1.0 + np.exp(kg * (rel_g - sg))) * ga / (1.0 + np.exp(ka * (rel_a - sa)))


def qabf(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Qabf (Q^{AB/F}): gradient-based edge preservation of a fusion, Xydeas & Petrovic.

    With 3x3 Sobel responses s_x, s_y of each image: edge strength g = sqrt(s_x^2 + s_y^2) and
    orientation alpha = atan(s_y/s_x). For source X in {A, B}: relative strength
    G^XF = g_F/g_X if g_X > g_F else g_X/g_F, relative orientation
    A^XF = 1 - |alpha_X - alpha_F| / (pi/2), and
    Q^XF = Gamma_g / (1 + exp(kappa_g (G^XF - sigma_g))) * Gamma_a / (1 + exp(kappa_a (A^XF - sigma_a)))
    with Gamma_g=0.9994, kappa_g=-15, sigma_g=0.5, Gamma_a=0.9879, kappa_a=-22, sigma_a=0.8. Then
    Qabf = sum(Q^AF g_A^L + Q^BF g_B^L) / sum(g_A^L + g_B^L), L = 1.
    Range 0..Q_max, Q_max = Q^XF at G = A = 1, about 0.9748 (F reproduces every source edge).
    NaN when both sources are flat. Borders are mirrored (see ``_sobel``); at equal strengths
    G^XF = 1 as in the paper (VIFB's port sets it to g_F there, a typo that barely matters).
    Reference: C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure",
    Electronics Letters 36(4), 2000.
    """
    ga_, gb_, gf_ = _same_size(a=a, b=b, fused=fused)
    g_a, al_a = _sobel(ga_)
    g_b, al_b = _sobel(gb_)
    g_f, al_f = _sobel(gf_)
    w_a, w_b = g_a ** _QL, g_b ** _QL
    den = (w_a + w_b).sum()
    if den <= 0:
        return float("nan")
    num = (_edge_preservation(g_a, al_a, g_f, al_f) * w_a).sum() \
        + (_edge_preservation(g_b, al_b, g_f, al_f) * w_b).sum()
    return float(num / den)


# --------------------------------------------------------------------------- SSIM / PSNR

_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _ssim_gray(x: np.ndarray, y: np.ndarray) -> float:
    k = _gauss_1d(_SSIM_WIN, _SSIM_SIGMA)
    mx, my = _filter_valid(x, k), _filter_valid(y, k)
    sxx = _filter_valid(x * x, k) - mx * mx
    syy = _filter_valid(y * y, k) - my * my
    sxy = _filter_valid(x * y, k) - mx * my
    num = (2 * mx * my + _SSIM_C1) * (2 * sxy + _SSIM_C2)
    den = (mx * mx + my * my + _SSIM_C1) * (sxx + syy + _SSIM_C2)
    return float((num / den).mean())


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of Wang et al.: mean over the image of the local SSIM map.

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    local statistics under an 11x11 Gaussian window (sigma 1.5, normalised, population
    variances), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255; the map is taken only where the
    window fits ('valid', as the authors' ssim_index.m) and averaged. No automatic
    downsampling. Symmetric; 1 iff x == y; range -1..1.
    ``x``, ``y``: same shape, gray ``HxW`` (H, W >= 11), or both ``HxWx3`` colour, which gives the
    mean of the per-channel SSIMs (as skimage with ``channel_axis``).
    Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
    from error visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004.
    """
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim == 3 and xa.shape[2] == 3 and ya.shape == xa.shape:
        return float(np.mean([ssim(xa[:, :, c], ya[:, :, c]) for c in range(3)]))
    gx, gy = _same_size(x=x, y=y)
    if min(gx.shape) < _SSIM_WIN:
        raise InputError(f"ssim: images must be at least {_SSIM_WIN}x{_SSIM_WIN}, got shape {gx.shape}")
    return _ssim_gray(gx, gy)


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR = 10 log10(255^2 / MSE) in dB, MSE over every element (all channels if colour).

    ``ref``, ``img``: same shape, uint8 or float on 0..255, gray or colour (not converted).
    inf when the images are identical. A mean error of 1 grey level (MSE 1) gives 48.13 dB.
    """
    r, i = np.asarray(ref), np.asarray(img)
    for name, arr in (("ref", r), ("img", i)):
        if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"psnr: {name}: expected uint8 or float on 0..255, got dtype {arr.dtype}")
    if r.shape != i.shape:
        raise InputError(f"psnr: ref and img must have the same shape: ref {r.shape}, img {i.shape}")
    mse = float(np.mean(np.square(r.astype(np.float64) - i.astype(np.float64))))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


# --------------------------------------------------------------------------- bundles

def fusion_metrics(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All no-reference fusion metrics of ``fused`` made from ``vis`` and ``ir``.

    ``vis``: ``HxWx3`` BGR or ``HxW`` gray; ``ir``: ``HxW`` (or gray ``HxWx3``); ``fused``: either;
    uint8 or float on 0..255, all the same H and W. Everything is scored on luminance.
    Returns ``{"EN", "SD", "SF", "AG"}`` of the fused image, ``"MI"`` = MI(V,F) + MI(I,F),
    ``"VIF"`` = VIFp(V,F) + VIFp(I,F), ``"Qabf"``, and ``"SSIM"`` = (SSIM(F,V) + SSIM(F,I)) / 2:
    the mean, so it stays on SSIM's -1..1 scale (some papers report the sum; halve theirs to
    compare). Images must be at least 41x41 (VIF's four scales). "VIF" is NaN when either
    source is constant and "Qabf" when both are (nothing to keep: undefined, not 0).
    """
    v, i, f = _same_size(vis=vis, ir=ir, fused=fused)
    return {
        "EN": entropy(f),
        "SD": std_dev(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": fusion_mi(v, i, f),
        "VIF": fusion_vif(v, i, f),
        "Qabf": qabf(v, i, f),
        "SSIM": 0.5 * (ssim(f, v) + ssim(f, i)),
    }


def reference_metrics(ref: np.ndarray, img: np.ndarray) -> dict[str, float]:
    """Full-reference scores of ``img`` against ``ref``: ``{"psnr": dB, "ssim": -1..1}``.

    Computed on the arrays as given (both gray, or both ``HxWx3``: PSNR over all channels, SSIM
    averaged over channels). To score luminance only, pass :func:`luminance` of each.
    """
    return {"psnr": psnr(ref, img), "ssim": ssim(ref, img)}
