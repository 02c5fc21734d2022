import numpy as np
import pytest

from lmfusion.smoke import KINDS, SCENE_KIND, SmokeConfig, add_smoke, density_field, fractal_noise, scene_depth


def _scene(h=96, w=128):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((np.sin(xx / 5) * np.cos(yy / 7)) * 0.4 + 0.5).astype(np.float32)


def test_deterministic_by_seed():
    img = _scene()
    a = add_smoke(img, np.random.default_rng(3), force_smoke=True).smoky
    b = add_smoke(img, np.random.default_rng(3), force_smoke=True).smoky
    c = add_smoke(img, np.random.default_rng(4), force_smoke=True).smoky
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_density_fields_are_normalised(kind):
    d = density_field(kind, 40, 60, np.random.default_rng(0))
    assert d.shape == (40, 60) and d.dtype == np.float32
    assert d.min() >= 0 and d.max() <= 1 and d.max() > 0.5


def test_scattering_model_and_contrast_loss():
    img = _scene()
    cfg = SmokeConfig(noise_std=(0.0, 0.0), airlight_variation=0.0)
    s = add_smoke(img, np.random.default_rng(1), cfg, force_smoke=True)
    expected = img * s.transmission + s.airlight * (1 - s.transmission)
    assert np.allclose(s.smoky, np.clip(expected, 0, 1), atol=1e-5)
    assert s.smoky.std() < img.std()          # smoke costs contrast
    assert (s.transmission <= 1).all() and (s.transmission > 0).all()


def test_ir_sees_through_the_smoke_far_better_than_vis():
    img = _scene()
    s = add_smoke(img, np.random.default_rng(2), ir=img.copy(), force_smoke=True,
                  cfg=SmokeConfig(kinds=("uniform",), tau_max=(2.0, 2.0)))
    err_vis = np.abs(s.smoky - img).mean()
    err_ir = np.abs(s.ir - img).mean()
    assert err_ir < 0.25 * err_vis


def test_clean_pairs_are_exact_identity():
    img = _scene()
    s = add_smoke(img, np.random.default_rng(0), SmokeConfig(p_clean=1.0))
    assert np.array_equal(s.smoky, img) and (s.transmission == 1).all()


def test_colour_images_keep_their_shape():
    img = np.dstack([_scene()] * 3)
    assert add_smoke(img, np.random.default_rng(0), force_smoke=True).smoky.shape == img.shape


def test_fractal_noise_range():
    n = fractal_noise(33, 77, np.random.default_rng(0))
    assert n.shape == (33, 77) and abs(n.min()) < 1e-6 and abs(n.max() - 1) < 1e-6


def test_scene_depth_follows_the_image_regions():
    # two flat regions (left dark, right bright): depth is near constant inside each and its one
    # large step lies on the border between them
    img = np.zeros((96, 128, 3), np.float32)
    img[:, :64] = (0.2, 0.3, 0.1)
    img[:, 64:] = (0.9, 0.8, 0.7)
    d = scene_depth(img, np.random.default_rng(5), regions=2)
    assert d.shape == (96, 128) and d.dtype == np.float32
    assert d.min() >= 0.2 - 1e-6 and d.max() <= 1.0
    assert np.array_equal(d, scene_depth(img, np.random.default_rng(5), regions=2))
    steps = np.abs(np.diff(d, axis=1)).mean(0)            # mean horizontal step per column border
    border = steps[60:67].sum()
    assert border > 5 * max(steps[:56].max(), steps[72:].max())


def test_scene_haze_is_a_kind_of_add_smoke():
    img = np.dstack([_scene()] * 3)
    cfg = SmokeConfig(kinds=(SCENE_KIND,), noise_std=(0.0, 0.0), airlight_variation=0.0)
    s = add_smoke(img, np.random.default_rng(1), cfg, force_smoke=True)
    tt = s.transmission[..., None]
    assert np.allclose(s.smoky, np.clip(img * tt + s.airlight * (1 - tt), 0, 1), atol=1e-5)
    assert s.transmission.max() < 1.0     # the nearest surface is still behind some haze
