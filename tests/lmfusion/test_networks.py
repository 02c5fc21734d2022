import pytest
import torch
import torch.nn.functional as F

from lmfusion.config import PRESETS, ConfigError, ModelConfig, preset
from lmfusion.networks import LMF, STRATEGIES, LMFusionNet, fuse_detail, fuse_detail_denoise, fuse_detail_soft
from lmfusion.networks import NEEDS_T


@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_shapes_through_the_whole_model(name):
    m = LMFusionNet(preset(name)).eval()
    v, i = torch.rand(2, 1, 32, 48), torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        assert m(v, i).shape == (2, 1, 32, 48)
        assert m.clear(v).shape == (2, 1, 32, 48)
        z = m.encoder(v)
    assert z.shape == (2, preset(name).autoencoder.latent_channels, 32, 48)
    assert (z >= 0).all()  # ReLU latent, as the reference


def test_paper_lmf_has_three_distinct_residual_blocks():
    lmf = LMF(PRESETS["paper"].lmf)
    assert len(lmf.blocks) == 3
    ptrs = {b.c1.weight.data_ptr() for b in lmf.blocks}
    assert len(ptrs) == 3  # the reference called block 2 twice; ours are distinct


def test_affine_head_starts_as_identity_mapping():
    lmf = LMF(PRESETS["tiny"].lmf).eval()
    z = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(lmf(z), z)


def test_scaled_trunk_rejects_odd_sizes_with_a_clear_message():
    lmf = LMF(PRESETS["tiny"].lmf)
    with pytest.raises(ValueError, match="divisible by 2"):
        lmf(torch.rand(1, 3, 15, 16))


@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "detail_denoise"])
def test_every_strategy_of_identical_inputs_returns_that_input(name):
    a = torch.rand(1, 3, 16, 20) + 0.1
    extra = (torch.rand(1, 1, 16, 20),) if name in NEEDS_T else ()  # any transmission
    assert torch.allclose(STRATEGIES[name](a, a.clone(), *extra), a, atol=1e-5)


def test_denoise_detail_of_identical_structured_inputs_returns_that_input():
    # Not of pure noise (above): detail_denoise shrinks what looks like noise in the VIS input
    # only. A scene with structure and no noise comes back as it was.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    x = (0.5 + 0.3 * torch.sin(9 * xx) * torch.cos(7 * yy) + 0.3 * (xx > 0.5)).expand(1, 3, 48, 64)
    assert (fuse_detail_denoise(x, x.clone()) - x).abs().max() < 0.005


def test_average_strategy_is_the_mean():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.allclose(STRATEGIES["average"](a, b), (a + b) / 2)


def test_detail_strategy_keeps_an_edge_present_in_only_one_input():
    a = torch.zeros(1, 3, 32, 32)
    a[..., 16:] = 1.0                   # a step edge in a
    b = torch.full_like(a, 0.5)         # flat b
    avg = STRATEGIES["average"](a, b)
    det = fuse_detail(a, b)
    step = lambda x: (x[..., 16].mean() - x[..., 15].mean()).item()  # contrast across the edge
    assert step(avg) == pytest.approx(0.5)
    assert step(det) > 0.9


def test_soft_detail_keeps_a_lone_edge_and_averages_shared_texture():
    a = torch.zeros(1, 3, 32, 32)
    a[..., 16:] = 1.0                   # a step edge only in a
    b = torch.full_like(a, 0.5)
    step = lambda x: (x[..., 16].mean() - x[..., 15].mean()).item()
    assert step(fuse_detail_soft(a, b)) > 0.9  # as the hard max-abs rule
    # The same texture in both inputs at different strengths: the hard rule copies the stronger
    # one; the soft rule blends towards it, staying between the two.
    g = torch.Generator().manual_seed(0)
    tex = torch.randn(1, 3, 32, 32, generator=g)
    a2, b2 = 0.5 + 0.2 * tex, 0.5 + 0.1 * tex
    soft, hard = fuse_detail_soft(a2, b2), fuse_detail(a2, b2)
    amp = lambda x: (x - x.mean()).std().item()
    assert amp(b2) < amp(soft) < amp(hard) <= amp(a2) * 1.05


def test_denoise_detail_takes_the_base_mostly_from_ir_and_drops_vis_noise_but_keeps_its_lines():
    # Flat inputs: only the base is left, weighted 0.2 VIS : 0.8 IR (the VIS veil stays out).
    a, b = torch.full((1, 3, 32, 32), 0.9), torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(fuse_detail_denoise(a, b), torch.full_like(a, 0.2 * 0.9 + 0.8 * 0.4), atol=1e-6)
    g = torch.Generator().manual_seed(1)
    noise = 0.03 * torch.randn(1, 3, 64, 64, generator=g)
    flat_ir = torch.full((1, 3, 64, 64), 0.5)
    fine = lambda x: (x - F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)).pow(2).mean().item()
    # Pure sensor noise in VIS over a flat IR: soft_detail passes a good part of it on,
    # detail_denoise shrinks it away.
    assert fine(fuse_detail_denoise(0.5 + noise, flat_ir)) < 0.1 * fine(fuse_detail_soft(0.5 + noise, flat_ir))
    # A thin bright line in the noisy VIS only (well above the noise) keeps most of its contrast
    # (large-scale VIS brightness, by design, enters through the base at 0.2).
    line = torch.full((1, 3, 64, 64), 0.3)
    line[..., 31:33] = 0.9
    out = fuse_detail_denoise(line + noise, flat_ir)
    contrast = (out[..., 31:33].mean() - out[..., 24:28].mean()).item()
    assert contrast > 0.4   # of 0.6


@pytest.mark.parametrize("strategy", ["detail_soft", "detail_denoise"])
def test_fp16_network_fuses_a_flat_saturated_frame_without_nan(strategy):
    # The rules' 1e-12 guards are 0 in fp16, so on a flat latent they compute 0/0 ...
    flat = torch.full((1, 3, 32, 32), 0.7, dtype=torch.float16)
    assert torch.isnan(STRATEGIES[strategy](flat, flat)).any()
    # ... which is why the network hands them float32 latents whatever its own precision.
    net = LMFusionNet(PRESETS["tiny"]).eval().half()
    with torch.no_grad():
        out = net(torch.ones(1, 1, 32, 32, dtype=torch.float16), torch.ones(1, 1, 32, 32, dtype=torch.float16),
                  strategy=strategy)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_channel_attention_weights_the_stronger_channel():
    a, b = torch.full((1, 3, 4, 4), 3.0), torch.full((1, 3, 4, 4), 1.0)
    out = STRATEGIES["channel_avg"](a, b)
    assert torch.allclose(out, torch.full_like(a, 0.75 * 3 + 0.25 * 1))


def test_config_round_trip_and_unknown_key():
    cfg = PRESETS["default"]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    bad = cfg.to_dict()
    bad["lmf"]["widht"] = 3
    with pytest.raises(ConfigError, match="lmf.widht: unknown key"):
        ModelConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="unknown"):
        preset("huge")
