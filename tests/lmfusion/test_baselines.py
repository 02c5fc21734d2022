"""Classical fusers: the Fuser conventions, known outputs, edge keeping, errors, one real pair."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmfusion import metrics
from lmfusion.baselines import fuse_average, fuse_laplacian
from lmfusion.errors import ConfigError, InputError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FUSERS = [fuse_average, fuse_laplacian]


def textured(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float32), (0, 0), 1.5)
    return np.clip(img * 3 - 255, 0, 255).astype(np.uint8)


def step(h=64, w=128, lo=0, hi=255):
    """Vertical edge in the middle: columns < w/2 at lo, the rest at hi."""
    img = np.full((h, w), lo, np.uint8)
    img[:, w // 2:] = hi
    return img


def edge_contrast(img):
    """Grey-level jump across the middle column of row h/2 (one pixel either side)."""
    y = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = y.shape
    return int(y[h // 2, w // 2]) - int(y[h // 2, w // 2 - 1])


@pytest.mark.parametrize("fuse", FUSERS)
def test_output_follows_the_vis_format(fuse):
    ir = textured(seed=1)
    vis_bgr = cv2.merge([textured(seed=2), textured(seed=3), textured(seed=4)])
    out = fuse(vis_bgr, ir)
    assert out.shape == vis_bgr.shape and out.dtype == np.uint8
    out = fuse(vis_bgr[:, :, 0].copy(), ir)
    assert out.shape == ir.shape and out.dtype == np.uint8
    # IR delivered as 3 equal channels is the same image as HxW IR.
    np.testing.assert_array_equal(fuse(vis_bgr, cv2.merge([ir, ir, ir])), fuse(vis_bgr, ir))
    np.testing.assert_array_equal(fuse(vis_bgr, ir[:, :, None]), fuse(vis_bgr, ir))
    # Strided views (a channel of a BGR frame, a flipped frame) are accepted like copies.
    np.testing.assert_array_equal(fuse(vis_bgr[:, :, 1], ir[:, ::-1]),
                                  fuse(vis_bgr[:, :, 1].copy(), ir[:, ::-1].copy()))


@pytest.mark.parametrize("fuse", FUSERS)
def test_two_constants_fuse_to_their_average(fuse):
    vis, ir = np.full((40, 50), 100, np.uint8), np.full((40, 50), 50, np.uint8)
    np.testing.assert_array_equal(fuse(vis, ir), np.full((40, 50), 75, np.uint8))
    grey_bgr = np.full((40, 50, 3), 100, np.uint8)
    out = fuse(grey_bgr, ir)
    assert np.abs(out.astype(int) - 75).max() <= 1


@pytest.mark.parametrize("fuse", FUSERS)
def test_colour_comes_from_vis(fuse):
    vis = np.zeros((40, 50, 3), np.uint8)
    vis[:] = (40, 120, 200)  # orange-ish BGR
    vis[:, 25:] = (200, 90, 30)  # blue-ish BGR
    ir = textured(40, 50, seed=5)
    fused_crcb = cv2.cvtColor(fuse(vis, ir), cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(int)
    vis_crcb = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(int)
    # YCrCb -> BGR -> YCrCb round trip through uint8 (with BGR clipping at saturated Y) moves
    # chroma a little; a swapped or lost chroma would be off by tens.
    assert np.median(np.abs(fused_crcb - vis_crcb)) <= 2


def test_laplacian_keeps_an_edge_seen_only_by_ir():
    vis, ir = np.full((64, 128), 128, np.uint8), step()
    assert edge_contrast(fuse_laplacian(vis, ir)) >= 0.9 * 255
    assert edge_contrast(fuse_average(vis, ir)) <= 0.55 * 255  # the average halves it


def test_laplacian_keeps_an_edge_seen_only_by_vis():
    vis = cv2.merge([step(lo=20, hi=230)] * 3)
    ir = np.full((64, 128), 90, np.uint8)
    assert edge_contrast(fuse_laplacian(vis, ir)) >= 0.9 * 210
    assert edge_contrast(fuse_average(vis, ir)) <= 0.55 * 210


def test_laplacian_of_a_source_with_itself_reconstructs_it():
    x = textured(61, 83, seed=6)  # odd sizes: pyrUp must restore each level's exact size
    assert np.abs(fuse_laplacian(x, x).astype(int) - x).max() <= 1
    for levels in (1, 2, 7, 50):  # 50 is capped to what a 61 px side allows
        assert np.abs(fuse_laplacian(x, x, levels=levels).astype(int) - x).max() <= 1


def test_laplacian_beats_average_on_edge_preservation():
    vis, ir = textured(seed=7), textured(seed=8)
    q_lap = metrics.qabf(vis, ir, fuse_laplacian(vis, ir))
    q_avg = metrics.qabf(vis, ir, fuse_average(vis, ir))
    assert q_lap > q_avg + 0.05


@pytest.mark.parametrize("fuse", FUSERS)
def test_bad_inputs_raise_input_error(fuse):
    vis, ir = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    with pytest.raises(InputError, match=r"vis \(48, 64, 3\), ir \(24, 32\)"):
        fuse(vis, np.zeros((24, 32), np.uint8))
    with pytest.raises(InputError, match="vis: expected dtype uint8, got float32"):
        fuse(vis.astype(np.float32), ir)
    with pytest.raises(InputError, match="ir: expected dtype uint8, got uint16"):
        fuse(vis, ir.astype(np.uint16))
    with pytest.raises(InputError, match="ir: expected an HxW gray or HxWx3"):
        fuse(vis, np.zeros((48, 64, 2), np.uint8))
    with pytest.raises(InputError, match="vis"):
        fuse(np.zeros(64, np.uint8), np.zeros(64, np.uint8))
    with pytest.raises(ValueError):  # callers may catch the builtin
        fuse(vis, np.zeros((24, 32), np.uint8))


@pytest.mark.parametrize("levels", [0, -1, 2.5, True])
def test_laplacian_rejects_bad_levels(levels):
    x = np.zeros((32, 32), np.uint8)
    with pytest.raises(ConfigError, match="levels"):
        fuse_laplacian(x, x, levels=levels)


@pytest.mark.data
def test_real_pair_laplacian_scores_above_average():
    vis_path, ir_path = DATA / "vifb" / "vis" / "kettle.jpg", DATA / "vifb" / "ir" / "kettle.jpg"
    if not (vis_path.exists() and ir_path.exists()):
        pytest.skip(f"real data absent: {vis_path} (../shared/data, see DESIGN.md)")
    vis = cv2.imread(str(vis_path), cv2.IMREAD_COLOR)
    ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
    lap = metrics.fusion_metrics(vis, ir, fuse_laplacian(vis, ir))
    avg = metrics.fusion_metrics(vis, ir, fuse_average(vis, ir))
    # The textbook result: max-abs detail selection keeps more edges and contrast than averaging.
    assert lap["Qabf"] > avg["Qabf"]
    assert lap["SF"] > avg["SF"] and lap["AG"] > avg["AG"] and lap["SD"] > avg["SD"]
