"""The smoke model (SmokeNet), dehazing and the transmission-aware fusion rule, on synthetic images."""
import dataclasses

import numpy as np
import pytest
import torch

import lmfusion
from lmfusion.config import preset
from lmfusion.networks import clear_weight, fuse_transmission, lively_random_model
from lmfusion.smoke import SmokeConfig, add_smoke
from lmfusion.api import smoke_stats
from lmfusion.smoke_model import SmokeNet, SmokeNetConfig, airlight, dark_channel, dehaze
from lmfusion.weights import save_model


def _scene(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx / w), (yy / h), 0.5 + 0.4 * np.sin(xx / 5.0)], -1).astype(np.float32)
    img = img * 0.7 + 0.1 * rng.random((h, w, 3), dtype=np.float32)
    ir = (0.3 + 0.5 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < 300)).astype(np.float32)
    return img, ir


def test_dehaze_inverts_the_scattering_model_exactly_where_t_is_known():
    img, _ = _scene()
    t = torch.full((1, 1, 96, 128), 0.5)
    a = torch.tensor([0.9, 0.85, 0.8])[None, :, None, None]
    j = torch.from_numpy(img).permute(2, 0, 1)[None]
    hazy = j * t + a * (1 - t)
    assert torch.allclose(dehaze(hazy, t, a, t0=0.2), j, atol=1e-5)
    # below t0 the gain stops at 1/t0: noise is not amplified without bound
    out = dehaze(hazy, torch.full_like(t, 0.01), a, t0=0.2)
    assert float((out - a).abs().max()) <= float((hazy - a).abs().max()) / 0.2 + 1e-5


def test_airlight_is_the_colour_of_the_haziest_pixels():
    img = torch.zeros(1, 3, 40, 40)
    img[:, :, :5, :5] = torch.tensor([0.9, 0.8, 0.7])[:, None, None]
    a = airlight(img, dark_channel(img, 3))
    assert torch.allclose(a.flatten(), torch.tensor([0.9, 0.8, 0.7]), atol=1e-6)


def test_untrained_smokenet_is_the_dark_channel_prior_and_shapes_hold():
    net = SmokeNet(SmokeNetConfig()).eval()
    img, ir = _scene()
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    with torch.no_grad():
        t, a = net(x, torch.from_numpy(ir)[None, None])
        t2, _ = net(x, None)  # without IR it still works
    assert t.shape == (1, 1, 96, 128) and a.shape == (1, 3, 1, 1)
    assert 0 <= float(t.min()) and float(t.max()) <= 1
    assert torch.allclose(t, t2)  # zero-initialised: IR cues change nothing yet
    s = smoke_stats(t[0, 0].numpy())
    assert set(s) == {"coverage", "mean_t"} and 0 <= s["coverage"] <= 1 and 0 <= s["mean_t"] <= 1


def test_transmission_rule_follows_t_vis_in_clear_air_ir_in_thick_smoke():
    a = torch.rand(1, 3, 64, 64)
    b = torch.rand(1, 3, 64, 64)
    clear = fuse_transmission(a, b, torch.ones(1, 1, 64, 64))
    thick = fuse_transmission(a, b, torch.zeros(1, 1, 64, 64))
    # clear air: the base is the VIS base; thick smoke: the IR (shifted to the VIS tone)
    lo = lambda x: torch.nn.functional.avg_pool2d(x, 16)
    assert float((lo(clear) - lo(a)).abs().mean()) < float((lo(clear) - lo(b)).abs().mean())
    assert float((lo(thick) - lo(b - b.mean() + a.mean())).abs().mean()) < 0.02
    assert float(clear_weight(torch.tensor(0.05))) == 0 and float(clear_weight(torch.tensor(0.9))) == 1


@pytest.fixture(scope="module")
def smoke_weights(tmp_path_factory):
    cfg = dataclasses.replace(preset("tiny"), mapping="smoke", strategy="transmission")
    d = tmp_path_factory.mktemp("w")
    save_model(lively_random_model(cfg), d / "lmfusion.safetensors")
    return d


def _pair():
    img, ir = _scene(96, 128, 1)
    s = add_smoke(img, np.random.default_rng(3), SmokeConfig(p_clean=0), ir=ir, force_smoke=True)
    u8 = lambda x: np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    return u8(s.smoky[..., ::-1].copy()), u8(s.ir)


def test_fuser_returns_the_smoke_map_and_onnx_matches_torch(smoke_weights):
    vis, ir = _pair()
    ft = lmfusion.load(smoke_weights)
    fo = lmfusion.load(smoke_weights, engine="onnxruntime", engine_options={"cache_dir": smoke_weights / "onnx"})
    rt, ro = ft.fuse_batch_full([vis], [ir])[0], fo.fuse_batch_full([vis], [ir])[0]
    assert rt.fused.shape == vis.shape and rt.t.shape == vis.shape[:2]
    assert set(rt.smoke) == {"coverage", "mean_t"}
    assert np.abs(rt.fused.astype(int) - ro.fused.astype(int)).max() <= 2
    assert np.array_equal(ft.smoke_map(vis, ir), rt.t)
    assert ft.clear(vis, ir).shape == vis.shape and ft.clear(vis).shape == vis.shape
    red = lmfusion.load(smoke_weights, engine_options={"resolution_scale": 2}).fuse(vis, ir)
    assert red.shape == vis.shape


def test_a_latent_mapping_model_has_no_smoke_map(tmp_path):
    save_model(lively_random_model(preset("tiny")), tmp_path / "lmfusion.safetensors")
    f = lmfusion.load(tmp_path)
    vis, ir = _pair()
    assert f.smoke is None and f.fuse_batch_full([vis], [ir])[0].t is None
