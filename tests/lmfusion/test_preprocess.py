"""Device pre/post-processing in torch vs the OpenCV path (on the CPU), within one grey level."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lmfusion.api import Fuser
from lmfusion.engines import TorchEngine
from lmfusion.errors import InputError
from lmfusion.preprocess import bgr_to_ycrcb, finish, prepare_pairs, warp_perspective, ycrcb_to_bgr

from test_engines import lively, pairs  # noqa: E402  (tests/lmfusion is on sys.path under pytest)

RNG = np.random.default_rng(0)


def ir_from_vis_demo() -> np.ndarray:
    """The synthetic demo's geometry: scale 0.55, 1.5 deg, VIS 640x480 -> IR 320x256, plus a
    little perspective so the projective divide is exercised."""
    th = np.deg2rad(1.5)
    r = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    m = np.array([[1, 0, 166], [0, 1, 124], [0, 0, 1.0]]) @ r @ np.diag([0.55, 0.55, 1]) \
        @ np.array([[1, 0, -320], [0, 1, -240], [0, 0, 1.0]])
    m[2, 0] = 2e-5
    return m


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2)


def test_colour_conversions_match_opencv():
    img = RNG.integers(0, 256, (2, 60, 81, 3), dtype=np.uint8)
    got = bgr_to_ycrcb(nchw(img)).permute(0, 2, 3, 1).numpy()
    ref = np.stack([cv2.cvtColor(i, cv2.COLOR_BGR2YCrCb) for i in img])
    assert np.array_equal(got, ref)  # bit-exact: chroma errors grow 1.8x on the way back
    back = ycrcb_to_bgr(nchw(ref).float()).permute(0, 2, 3, 1).numpy()
    ref_back = np.stack([cv2.cvtColor(i, cv2.COLOR_YCrCb2BGR) for i in ref])
    assert back.dtype == np.uint8 and np.abs(back.astype(int) - ref_back).max() <= 1


@pytest.mark.parametrize("content", ["smooth", "noise"])
def test_warp_matches_cv2_warp_perspective(content):
    h, w = 480, 640
    if content == "smooth":
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(xx / 23 + yy / 41), 128 + 90 * np.cos(yy / 17),
                        128 + 60 * np.sin((xx + yy) / 31)], -1).astype(np.uint8)
    else:
        img = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    m = ir_from_vis_demo()
    ref = cv2.warpPerspective(img, m, (320, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    got = warp_perspective(nchw(img[None]).float(), m, (320, 256)).round().clamp(0, 255)
    got = got[0].permute(1, 2, 0).numpy()
    assert got.shape == ref.shape
    assert (ref == 0).any(), "the border must be in view for the test to cover it"
    assert np.abs(got - ref).max() <= 1


def test_prepare_and_finish_match_the_fuser_path():
    net = lively("tiny")
    eng = TorchEngine(net)
    fuser = Fuser(eng, net.size_multiple, "average")
    vis_vg = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    vis_vg = cv2.GaussianBlur(vis_vg, (0, 0), 3)  # camera-like: no single-pixel steps
    _, ir = pairs(1, 255, 321)                    # odd size: padding is exercised
    m = ir_from_vis_demo()
    vis_reg = cv2.warpPerspective(vis_vg, m, (321, 255), flags=cv2.INTER_LINEAR)
    ref = fuser.fuse(vis_reg, ir[0])
    vis_y, ir_y, crcb, (h, w) = prepare_pairs(torch.from_numpy(vis_vg[None]), torch.from_numpy(ir[0][None]),
                                              net.size_multiple, ir_from_vis=m)
    assert vis_y.shape == (1, 1, 256, 322) and (h, w) == (255, 321)
    with torch.inference_mode():
        got = finish(net(vis_y, ir_y, "average"), crcb, h, w)[0].numpy()
    assert got.shape == ref.shape == (255, 321, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 2  # 1 level per conversion step


def test_gray_and_errors():
    _, ir = pairs(2, 32, 48)
    vis = torch.from_numpy(np.stack(ir))
    vy, iy, crcb, hw = prepare_pairs(vis, vis, 4)
    assert crcb is None and vy.shape == (2, 1, 32, 48) and torch.equal(vy, iy)
    assert torch.equal(finish(vy, None, *hw), vis)
    with pytest.raises(InputError, match="ir_from_vis"):
        prepare_pairs(vis[:, :16], vis, 4)
    with pytest.raises(InputError, match=r"\(B, H, W\)"):
        prepare_pairs(vis, vis[0], 4)
