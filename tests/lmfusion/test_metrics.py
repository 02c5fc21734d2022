"""Fusion metrics against hand-computed values, constructed cases and (if installed) skimage."""
import math

import cv2
import numpy as np
import pytest

from lmfusion import metrics as M
from lmfusion.errors import InputError

# Qabf's per-pixel score for a perfectly kept edge (G = 1, A = 1), from the paper's constants.
Q_MAX = 0.9994 / (1 + math.exp(-15 * (1 - 0.5))) * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))


def textured(h=96, w=128, seed=0, blur=1.5):
    """Smooth random texture, uint8, with edges everywhere (so gradient metrics are well defined)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), blur) * 3 - 255, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- EN / SD / SF / AG

def test_entropy_known_histograms():
    two = np.zeros((8, 8), np.uint8)
    two[:, 4:] = 200
    assert M.entropy(two) == pytest.approx(1.0, abs=1e-12)
    assert M.entropy(np.full((8, 8), 77, np.uint8)) == 0.0
    four = np.tile(np.array([0, 10, 20, 30], np.uint8), (4, 1))
    assert M.entropy(four) == pytest.approx(2.0, abs=1e-12)
    every_level = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert M.entropy(every_level) == pytest.approx(8.0, abs=1e-12)


def test_entropy_rounds_float_input_to_grey_levels():
    f = np.array([[0.2, 0.4], [199.6, 200.3]])  # levels 0, 0, 200, 200
    assert M.entropy(f) == pytest.approx(1.0, abs=1e-12)


def test_std_dev_is_population_sd():
    half = np.zeros((4, 4), np.uint8)
    half[:2] = 255
    assert M.std_dev(half) == pytest.approx(127.5)
    assert M.std_dev(np.array([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(math.sqrt(1.25))


def test_spatial_frequency_hand_values():
    assert M.spatial_frequency(np.full((10, 12), 90, np.uint8)) == 0.0
    # [[0,1],[1,0]]: RF^2 = (1+1)/4, CF^2 = (1+1)/4 -> SF = 1.
    assert M.spatial_frequency(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)
    h, w, c = 20, 30, 3.0
    ramp_x = np.tile(np.arange(w) * c, (h, 1))
    assert M.spatial_frequency(ramp_x) == pytest.approx(c * math.sqrt((w - 1) / w))
    assert M.spatial_frequency(ramp_x.T.copy()) == pytest.approx(c * math.sqrt((w - 1) / w))


def test_average_gradient_hand_values():
    assert M.average_gradient(np.full((10, 12), 90, np.uint8)) == 0.0
    # Only pixel (0,0) has both forward neighbours: sqrt((1 + 1) / 2) = 1.
    assert M.average_gradient(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)
    ramp = np.tile(np.arange(30) * 4.0, (20, 1))
    assert M.average_gradient(ramp) == pytest.approx(4.0 / math.sqrt(2))


# --------------------------------------------------------------------------- MI

def test_mutual_information_of_image_with_itself_is_its_entropy():
    a = textured()
    assert M.mutual_information(a, a) == pytest.approx(M.entropy(a), abs=1e-9)


def test_mutual_information_of_independent_patterns_is_zero():
    a = np.zeros((8, 8), np.uint8)
    a[:, 4:] = 255
    b = np.zeros((8, 8), np.uint8)
    b[4:, :] = 255
    assert M.mutual_information(a, b) == pytest.approx(0.0, abs=1e-12)
    # b a deterministic function of a (inverted): MI is all of EN.
    assert M.mutual_information(a, 255 - a) == pytest.approx(1.0, abs=1e-12)


def test_fusion_mi_sums_both_sources():
    a, b = textured(seed=1), textured(seed=2)
    assert M.fusion_mi(a, b, a) == pytest.approx(M.entropy(a) + M.mutual_information(b, a), abs=1e-9)


# --------------------------------------------------------------------------- SSIM / PSNR

def test_ssim_identity_symmetry_and_noise():
    x = textured()
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(3)
    noisy = [np.clip(x + rng.normal(0, s, x.shape), 0, 255) for s in (2, 8, 32)]
    scores = [M.ssim(x, n) for n in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert M.ssim(x, noisy[1]) == pytest.approx(M.ssim(noisy[1], x), abs=1e-12)


def test_ssim_of_two_constants_is_the_luminance_term():
    a, b = 100.0, 140.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # contrast/structure terms are C2/C2 = 1
    assert M.ssim(np.full((20, 20), a), np.full((20, 20), b)) == pytest.approx(expected, abs=1e-12)


def test_psnr_known_mse():
    ref = np.full((16, 16), 100, np.uint8)
    assert M.psnr(ref, ref + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)  # MSE 1
    assert M.psnr(ref, ref + 2) == pytest.approx(20 * math.log10(255) - 10 * math.log10(4), abs=1e-9)
    assert M.psnr(ref, ref) == math.inf
    colour = np.zeros((4, 4, 3), np.uint8)
    off = colour.copy()
    off[:, :, 0] = 4  # MSE over all channels: 16 / 3
    assert M.psnr(colour, off) == pytest.approx(10 * math.log10(255 ** 2 / (16 / 3)), abs=1e-9)


def test_ssim_and_psnr_match_skimage():
    skm = pytest.importorskip("skimage.metrics", reason="scikit-image not installed (optional cross-check)")
    x = textured(seed=4)
    rng = np.random.default_rng(5)
    y = np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.uint8)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert M.ssim(x, y) == pytest.approx(skm.structural_similarity(x, y, **kw), abs=1e-9)
    xf, yf = x.astype(np.float64), cv2.GaussianBlur(x, (5, 5), 1).astype(np.float64)
    assert M.ssim(xf, yf) == pytest.approx(skm.structural_similarity(xf, yf, **kw), abs=1e-9)
    xc = np.stack([x, textured(seed=6), textured(seed=7)], axis=2)
    yc = cv2.GaussianBlur(xc, (3, 3), 1)
    assert M.ssim(xc, yc) == pytest.approx(
        skm.structural_similarity(xc, yc, channel_axis=2, **kw), abs=1e-9)
    assert M.psnr(x, y) == pytest.approx(skm.peak_signal_noise_ratio(x, y, data_range=255), abs=1e-9)
    assert M.psnr(xc, yc) == pytest.approx(skm.peak_signal_noise_ratio(xc, yc, data_range=255), abs=1e-9)


# --------------------------------------------------------------------------- Qabf

def test_qabf_perfect_copy_of_the_only_edged_source_scores_q_max():
    a = textured()
    flat = np.full_like(a, 128)
    assert M.qabf(a, flat, a) == pytest.approx(Q_MAX, abs=1e-12)
    # Swapping the sources changes nothing.
    assert M.qabf(flat, a, a) == pytest.approx(Q_MAX, abs=1e-12)


def test_qabf_hand_value_for_doubled_edges():
    # F = 2A: every edge twice as strong, same orientation -> G = 1/2, A = 1 everywhere.
    a = textured().astype(np.float64) * 0.4
    flat = np.full_like(a, 50.0)
    expected = 0.9994 / 2 * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    assert M.qabf(a, flat, 2 * a) == pytest.approx(expected, abs=1e-9)


def test_qabf_drops_when_fused_is_blurred_or_flat():
    a, b = textured(seed=1), textured(seed=2, blur=3)
    f = (a.astype(np.float64) + b) / 2
    sharp = M.qabf(a, b, f)
    blurred = M.qabf(a, b, cv2.GaussianBlur(f, (0, 0), 2))
    assert 0 < blurred < sharp < Q_MAX
    assert M.qabf(a, b, np.full_like(f, 100.0)) < 0.01


def _qabf_reference(a, b, f):
    """Per-pixel loop port of the widely used Qabf MATLAB code (VIFB's metricsQabf), with two
    documented differences: mirrored borders instead of zeros, and G = 1 at equal strengths."""
    from scipy.signal import convolve2d

    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)   # y response
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)   # x response

    def sobel(img):
        p = np.pad(img.astype(float), 1, mode="reflect")
        sx, sy = convolve2d(p, h3, mode="valid"), convolve2d(p, h1, mode="valid")
        g = np.sqrt(sx ** 2 + sy ** 2)
        al = np.empty_like(g)
        for i, j in np.ndindex(g.shape):
            al[i, j] = math.pi / 2 if sx[i, j] == 0 else math.atan(sy[i, j] / sx[i, j])
        return g, al

    def q(gx, ax, gf, af):
        out = np.empty_like(gx)
        for i, j in np.ndindex(gx.shape):
            if gx[i, j] > gf[i, j]:
                rel = gf[i, j] / gx[i, j]
            elif gx[i, j] == gf[i, j]:
                rel = 1.0 if gx[i, j] > 0 else 0.0
            else:
                rel = gx[i, j] / gf[i, j]
            ra = 1 - abs(ax[i, j] - af[i, j]) / (math.pi / 2)
            out[i, j] = 0.9994 / (1 + math.exp(-15 * (rel - 0.5))) * 0.9879 / (1 + math.exp(-22 * (ra - 0.8)))
        return out

    (ga, aa), (gb, ab), (gf, af) = sobel(a), sobel(b), sobel(f)
    return (q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb).sum() / (ga + gb).sum()


def test_qabf_matches_loop_port_of_reference_code():
    pytest.importorskip("scipy.signal", reason="scipy not installed (optional cross-check)")
    a, b = textured(24, 30, seed=20, blur=1.0), textured(24, 30, seed=21, blur=2.0)
    # Fused images with weaker, stronger, and differently oriented edges than the sources.
    # Integer-valued, so both Sobel implementations are exact: at s_x ~ 0 the orientation jumps
    # between +pi/2 and -pi/2 with the sign of a rounding error (a property of the definition).
    for fused in (np.rint(0.6 * a + 0.4 * b), 2.0 * a, textured(24, 30, seed=22),
                  cv2.GaussianBlur(b, (0, 0), 1.0)):
        assert M.qabf(a, b, fused) == pytest.approx(_qabf_reference(a, b, fused), rel=1e-9)


# --------------------------------------------------------------------------- VIF

def test_vif_identity_is_one_and_blur_lowers_it():
    x = textured(seed=8)
    assert M.vif_pixel(x, x) == pytest.approx(1.0, abs=1e-6)
    mild = M.vif_pixel(x, cv2.GaussianBlur(x, (0, 0), 0.8))
    strong = M.vif_pixel(x, cv2.GaussianBlur(x, (0, 0), 2.5))
    assert 1.0 > mild > strong > 0.0
    b = textured(seed=9)
    assert M.fusion_vif(x, b, x) == pytest.approx(1.0 + M.vif_pixel(b, x), abs=1e-9)


def _vifp_mscale_reference(ref, dist):
    """Literal port of Sheikh & Bovik's vifp_mscale.m with scipy.signal.convolve2d('valid')."""
    from scipy.signal import convolve2d

    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        m = (n - 1) / 2
        y, x = np.ogrid[-m:m + 1, -m:m + 1]
        win = np.exp(-(x * x + y * y) / (2 * sd * sd))
        win /= win.sum()
        filt = lambda im: convolve2d(im, np.rot90(win, 2), mode="valid")  # noqa: E731
        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        mu1, mu2 = filt(ref), filt(dist)
        s1 = np.maximum(filt(ref * ref) - mu1 * mu1, 0)
        s2 = np.maximum(filt(dist * dist) - mu2 * mu2, 0)
        s12 = filt(ref * dist) - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g ** 2 * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    return num / den


def test_vif_matches_literal_port_of_reference_code():
    pytest.importorskip("scipy.signal", reason="scipy not installed (optional cross-check)")
    x = textured(75, 101, seed=10)  # odd sizes exercise the 'valid' crops and 2x subsampling
    y = np.clip(cv2.GaussianBlur(x, (0, 0), 1.2) * 0.8 + 20, 0, 255)
    assert M.vif_pixel(x, y) == pytest.approx(_vifp_mscale_reference(x, y), rel=1e-9)
    neg = 255.0 - x  # negative gains exercise the g < 0 branch
    assert M.vif_pixel(x, neg) == pytest.approx(_vifp_mscale_reference(x, neg), rel=1e-9, abs=1e-12)


def test_vif_rejects_images_too_small_for_four_scales():
    with pytest.raises(InputError, match="41x41"):
        M.vif_pixel(np.zeros((40, 80), np.uint8), np.zeros((40, 80), np.uint8))


# --------------------------------------------------------------------------- bundles and errors

def test_fusion_metrics_bundle_matches_the_single_metrics():
    rng = np.random.default_rng(11)
    vis = cv2.merge([textured(seed=12), textured(seed=13), textured(seed=14)])
    ir = textured(seed=15, blur=3)
    vis_y = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)
    fused = np.clip((vis_y.astype(np.float64) + ir) / 2 + rng.normal(0, 2, ir.shape), 0, 255)
    d = M.fusion_metrics(vis, ir, fused)
    assert set(d) == {"EN", "SD", "SF", "AG", "MI", "VIF", "Qabf", "SSIM"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in d.values())
    assert d["EN"] == M.entropy(fused)
    assert d["MI"] == pytest.approx(M.fusion_mi(vis_y, ir, fused))
    assert d["VIF"] == pytest.approx(M.fusion_vif(vis_y, ir, fused))
    assert d["Qabf"] == pytest.approx(M.qabf(vis_y, ir, fused))
    assert d["SSIM"] == pytest.approx((M.ssim(fused, vis_y) + M.ssim(fused, ir)) / 2)


def test_reference_metrics():
    x = textured()
    d = M.reference_metrics(x, x)
    assert d == {"psnr": math.inf, "ssim": pytest.approx(1.0)}
    d = M.reference_metrics(x, np.clip(x.astype(np.int16) + 2, 0, 255).astype(np.uint8))
    assert 40 < d["psnr"] < 48.2 and 0.9 < d["ssim"] < 1.0


def test_bad_inputs_raise_input_error_naming_the_problem():
    a = np.zeros((50, 60), np.uint8)
    with pytest.raises(InputError, match=r"vis \(50, 60\).*fused \(50, 61\)"):
        M.fusion_metrics(a, a, np.zeros((50, 61), np.uint8))
    with pytest.raises(InputError, match="int32"):
        M.entropy(a.astype(np.int32))
    with pytest.raises(InputError, match="shape"):
        M.entropy(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(InputError, match="ref"):
        M.psnr(a, np.zeros((50, 61), np.uint8))
    assert issubclass(InputError, ValueError)
