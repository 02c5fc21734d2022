"""Automatic registration on a synthetic cross-modal pair, and the online refiner's decisions."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

import calibration
from calibration import Calibration, CalibrationError, corner_error
from calibration.auto import AutoConfig, stretch
from calibration.online import OnlineRefiner, OnlineRefinerConfig

from calib_synth import similarity, textured_scene

VIS_SIZE, IR_SIZE = (640, 480), (320, 256)


def make_pair(true_ir_from_vis, seed=0):
    """VIS BGR 640x480 and an 'LWIR' 320x256 of the same scene: inverted, blurred, noisy."""
    rng = np.random.default_rng(seed)
    scene = textured_scene(VIS_SIZE, rng)
    vis = cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR)
    vis = np.clip(vis + rng.normal(0, 3, vis.shape), 0, 255).astype(np.uint8)
    thermal = 255.0 - scene.astype(np.float32)  # contrast inverted, as warm/cool often is
    thermal = 0.6 * thermal + 40  # and a different gain/offset
    thermal = cv2.GaussianBlur(thermal, (0, 0), 1.2)
    ir = cv2.warpPerspective(thermal, true_ir_from_vis, IR_SIZE, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    ir = np.clip(ir + rng.normal(0, 2, ir.shape), 0, 255).astype(np.uint8)
    return vis, ir


# Residual around the default guess (VIS frame stretched onto IR frame): 3.5 deg, +6 % scale,
# a shift of 6 % of the width, and a perspective term.
TRUE = similarity(1.06, 3.5, (159.5, 127.5), (159.5, 127.5), shift=(19, -9)) @ stretch(VIS_SIZE, IR_SIZE)
TRUE[2, :2] = [3e-5, -2e-5]


def test_auto_recovers_inverted_cross_modal_pair():
    vis, ir = make_pair(TRUE)
    guess_err = corner_error(stretch(VIS_SIZE, IR_SIZE), TRUE, VIS_SIZE)
    assert guess_err > 15  # the search has real work to do
    cal = calibration.estimate(vis, ir, method="auto")
    assert corner_error(cal.ir_from_vis, TRUE, VIS_SIZE) < 1.0
    assert cal.vis_size == VIS_SIZE and cal.ir_size == IR_SIZE and cal.method.startswith("auto-grad-ecc")


def test_auto_bad_config_is_clear():
    with pytest.raises(CalibrationError, match="model must be 'homography' or 'affine'"):
        AutoConfig(model="projective")
    with pytest.raises(CalibrationError, match="robust_inset"):
        AutoConfig(robust_inset=0.5)
    with pytest.raises(CalibrationError, match="robust_rounds"):
        AutoConfig(robust_rounds=-1)


def knocked(cal_matrix, dx=4.0, dy=-3.0, deg=0.8):
    """The geometry after a knock: a small rotation and shift in IR px."""
    return similarity(1.0, deg, (160, 128), (160, 128), shift=(dx, dy)) @ cal_matrix


def test_online_refiner_adopts_better_geometry_and_logs_it(caplog):
    vis, ir = make_pair(TRUE, seed=1)
    start = Calibration(knocked(TRUE), VIS_SIZE, IR_SIZE, method="points-ransac")
    assert corner_error(start.ir_from_vis, TRUE, VIS_SIZE) > 3
    ref = OnlineRefiner(OnlineRefinerConfig(every_n_pairs=3), start)
    with caplog.at_level(logging.INFO, logger="calibration.online"):
        assert ref.offer(vis, ir) is None and ref.offer(vis, ir) is None  # only counted
        res = ref.offer(vis, ir)  # the 3rd pair is re-estimated
    assert res is not None and res.adopted and res.reason == "adopted"
    assert res.new_score > res.old_score + 0.02 and res.shift_px > 3
    assert corner_error(ref.calibration.ir_from_vis, TRUE, VIS_SIZE) < 1.0
    assert ref.calibration.id != start.id and ref.adoptions == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "calibration.online"]
    assert len(lines) == 1 and start.id in lines[0] and "score" in lines[0] and "px" in lines[0]
    # Offered the same pair again, the adopted geometry is not beaten by the margin: kept.
    again = ref.update(vis, ir)
    assert not again.adopted and again.reason == "not-better" and ref.adoptions == 1


@pytest.mark.parametrize("kind", ["flat", "smoke"])
def test_online_refiner_refuses_structureless_vis(kind):
    vis, ir = make_pair(TRUE, seed=2)
    if kind == "flat":
        vis = np.full_like(vis, 200)
    else:  # dense smoke: 90 % airlight, the scene barely shows through (plus sensor noise)
        rng = np.random.default_rng(5)
        vis = np.clip(0.1 * vis + 0.9 * 205 + rng.normal(0, 1.0, vis.shape), 0, 255).astype(np.uint8)
    start = Calibration(knocked(TRUE), VIS_SIZE, IR_SIZE)
    ref = OnlineRefiner(OnlineRefinerConfig(), start)
    res = ref.update(vis, ir)
    assert not res.adopted and res.reason == "structureless"
    assert ref.calibration is start


def test_online_refiner_checks_sizes():
    ref = OnlineRefiner(OnlineRefinerConfig(), Calibration(TRUE, VIS_SIZE, IR_SIZE))
    with pytest.raises(CalibrationError, match="640x480"):
        ref.update(np.zeros((240, 320, 3), np.uint8), np.zeros((256, 320), np.uint8))


DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.data
def test_auto_recovers_a_known_distortion_of_real_roadscene_pairs():
    """Real cross-modal pairs: the distortion is recovered to < 2 px of the undistorted answer.

    The data set's own registration is off by ~3 px (docs/calibration.md), so this compares
    with the method's answer on the undistorted pair, not with the data set.
    """
    root = DATA / "roadscene"
    if not (root / "vis").is_dir():
        pytest.skip(f"real pairs not found at {root.resolve()} (../shared/data/roadscene)")
    names = sorted(p.name for p in (root / "vis").glob("*.jpg"))[:40:10]  # test split, 4 pairs
    rng = np.random.default_rng(0)
    errs = {}
    for name in names:
        ir = cv2.imread(str(root / "ir" / name), cv2.IMREAD_GRAYSCALE)
        vis = cv2.resize(cv2.imread(str(root / "vis" / name)), (ir.shape[1], ir.shape[0]),
                         interpolation=cv2.INTER_AREA)
        h, w = ir.shape
        g = similarity(rng.uniform(0.93, 1.07), rng.uniform(-4, 4), ((w - 1) / 2, (h - 1) / 2),
                       ((w - 1) / 2, (h - 1) / 2), shift=rng.uniform(-0.06, 0.06, 2) * (w, h))
        base = calibration.estimate(vis, ir, method="auto").ir_from_vis
        moved = calibration.estimate(cv2.warpPerspective(vis, g, (w, h)), ir, method="auto").ir_from_vis
        errs[name] = round(corner_error(moved, base @ np.linalg.inv(g), (w, h)), 2)
    # 4 of 4 recover to < 0.8 px today; one night pair may fail (78 % over the whole split).
    assert sum(e < 2.0 for e in errs.values()) >= 3, f"recovery errors (px): {errs}"


def _blurred_scene(seed=3):
    scene = textured_scene((320, 256), np.random.default_rng(seed)).astype(np.float32)
    return cv2.GaussianBlur(scene, (0, 0), 1.5) / 255.0


@pytest.mark.parametrize("affine", [False, True])
def test_ecc_align_recovers_a_known_small_warp_despite_gain_and_offset(affine):
    """The Gauss-Newton ECC solver the auto method uses: from the identity, a 2-3 px warp is
    recovered to a few hundredths of a px, whatever the gain and offset between the images."""
    from calibration.auto import ecc_align

    template = _blurred_scene()
    true = similarity(1.01, 0.6, (159.5, 127.5), (159.5, 127.5), shift=(2.0, -1.5))
    if not affine:
        true[2, :2] = [2e-5, -1e-5]
    # image(true @ x) = 0.5 * template(x) + 0.2: the template seen through the warp, other gain/offset
    image = 0.5 * cv2.warpPerspective(template, true, (320, 256), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT) + 0.2
    rho0 = float(np.corrcoef(template.ravel(), image.ravel())[0, 1])
    res = ecc_align(template, image.astype(np.float32), np.eye(3), iters=60, eps=1e-7, affine=affine)
    assert res is not None
    rho, warp = res
    assert rho > 0.99 > rho0
    assert corner_error(warp, true, (320, 256)) < 0.05


def test_ecc_align_ignores_masked_no_data():
    """No-data fill (mask 0) must not pull the warp: a black band over a quarter of the image."""
    from calibration.auto import ecc_align

    template = _blurred_scene(seed=4)
    true = similarity(1.0, 0.0, (0, 0), (0, 0), shift=(1.5, 1.0))
    image = cv2.warpPerspective(template, true, (320, 256), borderMode=cv2.BORDER_REFLECT)
    mask = np.full((256, 320), 255, np.uint8)
    image[:, :80] = 0.0
    mask[:, :80] = 0
    res = ecc_align(template, image, np.eye(3), iters=60, eps=1e-7, mask=mask)
    assert res is not None and corner_error(res[1], true, (320, 256)) < 0.05


def test_valid_mask_drops_constant_frame_bands_but_keeps_the_picture():
    from calibration.auto import valid_mask
    rng = np.random.default_rng(3)
    img = rng.integers(20, 230, (120, 160)).astype(np.uint8)
    img[:40, 30:90] = 255                        # a clipped sky patch that does not span a row
    img[:7], img[-12:], img[:, :15], img[:, -4:] = 255, 255, 255, 255   # a white camera frame
    ok = valid_mask(img)
    assert not ok[:7].any() and not ok[-12:].any() and not ok[:, :15].any() and not ok[:, -4:].any()
    assert ok[7:-12, 15:-4].all()                 # everything inside the frame, sky patch included
    dark = img.copy()
    dark[:30] = 1                                 # a band of 1s (not 0) along the top edge
    assert not valid_mask(dark)[:30].any() and valid_mask(dark)[30:-12, 15:-4].all()


@pytest.mark.parametrize("n_shapes,seed", [(20, 3), (10, 1)])
def test_auto_is_not_dragged_by_a_white_frame_around_the_ir_image(n_shapes, seed):
    """Some LWIR frames carry a constant white border (TNO's Bosnia: 4-15 px); its inner edge
    matches nothing in VIS and must not pull the alignment. On these sparser scenes, without
    the frame mask, the estimate was 3.1 and 13.4 px off."""
    rng = np.random.default_rng(seed)
    scene = textured_scene(VIS_SIZE, rng, n_shapes=n_shapes)
    vis = np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
    thermal = cv2.GaussianBlur(0.6 * (255.0 - scene.astype(np.float32)) + 40, (0, 0), 1.2)
    ir = cv2.warpPerspective(thermal, TRUE, IR_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ir = np.clip(ir + rng.normal(0, 2, ir.shape), 0, 255).astype(np.uint8)
    ir[:10], ir[-14:], ir[:, :16], ir[:, -9:] = 255, 255, 255, 255
    cal = calibration.estimate(vis, ir, method="auto")
    assert corner_error(cal.ir_from_vis, TRUE, VIS_SIZE) < 0.5


def test_ecc_align_weights_leave_out_a_conflicting_layer():
    """A region that moves differently (another depth plane) pulls plain ECC off the main
    plane's warp; weight 0 there (template coords) recovers the main warp exactly, and unit
    weights give the unweighted answer."""
    from calibration.auto import ecc_align

    template = _blurred_scene(seed=5)
    true = similarity(1.0, 0.0, (0, 0), (0, 0), shift=(1.5, -1.0))
    image = cv2.warpPerspective(template, true, (320, 256), borderMode=cv2.BORDER_REFLECT)
    other = similarity(1.0, 0.0, (0, 0), (0, 0), shift=(-2.5, 2.0)) @ true
    layer = cv2.warpPerspective(template, other, (320, 256), borderMode=cv2.BORDER_REFLECT)
    image[:, 160:] = layer[:, 160:]                 # the right half: a plane 4-5 px away
    weight = np.ones((256, 320), np.float32)
    weight[:, 150:] = 0.0                           # template coords: leave the right half out
    plain = ecc_align(template, image, np.eye(3), iters=60, eps=1e-7)
    ones = ecc_align(template, image, np.eye(3), iters=60, eps=1e-7, weight=np.ones_like(weight))
    weighted = ecc_align(template, image, np.eye(3), iters=60, eps=1e-7, weight=weight)
    assert plain is not None and ones is not None and weighted is not None
    assert corner_error(plain[1], true, (320, 256)) > 0.5           # the other plane pulls
    assert corner_error(ones[1], plain[1], (320, 256)) < 1e-3
    assert corner_error(weighted[1], true, (320, 256)) < 0.05


def _two_plane_pair(step_px=6.0):
    """make_pair(TRUE), but the right half of the IR frame shows the scene 6 px further right:
    a depth step, which no single homography fits."""
    vis, ir = make_pair(TRUE)
    _, ir_far = make_pair(similarity(1.0, 0.0, (0, 0), (0, 0), shift=(step_px, 0)) @ TRUE)
    ir[:, IR_SIZE[0] // 2:] = ir_far[:, IR_SIZE[0] // 2:]
    return vis, ir


def test_stability_passes_a_planar_pair_and_flags_a_depth_step():
    from calibration.auto import STABLE_PX, stability
    vis, ir = make_pair(TRUE)
    cal = calibration.estimate(vis, ir, method="auto")
    moves = stability(vis, ir, cal)
    assert len(moves) == 4 and max(moves) < 0.5  # one homography: the view does not matter
    vis2, ir2 = _two_plane_pair()
    cal2 = calibration.estimate(vis2, ir2, method="auto")
    moves2 = stability(vis2, ir2, cal2)
    # Leaving out the left side (one plane) moves the answer towards the other plane.
    assert max(moves2) > 2 * STABLE_PX
    with pytest.raises(CalibrationError, match="cut"):
        stability(vis, ir, cal, cut=0.6)


def test_structure_maps_are_the_same_wherever_the_buffers_sit():
    """The same pair must give the same calibration file on every call, not only in a fresh
    process: cv2.magnitude rounded its last bit differently with the buffers' alignment, and
    ECC's stop decisions turned that into answers up to ~0.07 px apart."""
    from calibration.auto import edge_map
    from calibration.score import gradient_magnitude
    rng = np.random.default_rng(0)
    cfg = AutoConfig()
    held = []
    for shape in [(40, 60), (64, 100), (106, 160), (165, 250)]:  # every pyramid level size class
        img = cv2.GaussianBlur(rng.uniform(0, 255, shape).astype(np.float32), (0, 0), 2)
        ref, ref_g = edge_map(img, cfg), gradient_magnitude(img)
        for k in range(48):
            held.append(np.empty(k * 37 + 1, np.uint8))  # move where the next buffers are allocated
            assert np.array_equal(edge_map(img, cfg), ref), (shape, k)
            assert np.array_equal(gradient_magnitude(img), ref_g), (shape, k)
