"""Training on tiny synthetic images: losses fall, checkpoints resume exactly, configs validate."""
import numpy as np
import pytest
import torch

from lmfusion.config import ConfigError
from lmfusion.train import Trainer, TrainConfig
from lmfusion.weights import load_model


def _images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[0:72, 0:80]
        f = rng.uniform(0.05, 0.3)
        img = 128 + 100 * np.sin(xx * f + rng.uniform(0, 6)) * np.cos(yy * f)
        out.append(np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8))
    return out


def _cfg(tmp_path, **kw):
    base = dict(name="t", model="tiny", steps=4, batch=2, crop=32, val_every=100, ckpt_every=2,
                val_crop=32, warmup=1, out=str(tmp_path / kw.pop("sub", "run")))
    base.update(kw)
    return TrainConfig(**base)


def test_stage1_then_stage2_produce_loadable_weights(tmp_path):
    imgs = _images()
    s1 = _cfg(tmp_path, stage=1, sub="s1", steps=6)
    m1 = Trainer(s1, imgs, imgs[:2]).run()
    assert "val_psnr_recon" in m1
    s2 = _cfg(tmp_path, stage=2, sub="s2", init=str(tmp_path / "s1" / "model.safetensors"),
              optimizer="piecewise")
    m2 = Trainer(s2, imgs, imgs[:2]).run()
    assert {"val_psnr_clear_smoky", "val_psnr_clear_clean", "val_loss"} <= set(m2)
    model, prov = load_model(tmp_path / "s2" / "model.safetensors")
    assert prov["stage"] == 2 and prov["steps"] == 4
    enc1, _ = load_model(tmp_path / "s1" / "model.safetensors")
    # stage 2 leaves the frozen encoder exactly as stage 1 trained it
    for a, b in zip(enc1.encoder.parameters(), model.encoder.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "s2" / "loss_log.csv").read_text().count("\n") == 5  # header + 4 steps
    # the best validated weights are kept beside the latest, with the step they came from
    best, best_prov = load_model(tmp_path / "s2" / "best.safetensors")
    assert best_prov["steps"] == 4 and "val_psnr_clear_smoky" in best_prov["validation"]


def test_stage1_loss_falls(tmp_path):
    imgs = _images()
    tr = Trainer(_cfg(tmp_path, stage=1, steps=60, lr=3e-3, crop=32), imgs, imgs[:2])
    before = tr.validate()["val_loss"]
    after = tr.run()["val_loss"]
    assert after < 0.7 * before


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    imgs = _images()
    straight = Trainer(_cfg(tmp_path, stage=1, sub="a", steps=4), imgs, imgs[:1])
    straight.run()
    Trainer(_cfg(tmp_path, stage=1, sub="b", steps=4), imgs, imgs[:1]).run(until=2)  # "killed" at 2
    torch.manual_seed(123)          # a fresh process: different init, overwritten by the checkpoint
    resumed = Trainer(_cfg(tmp_path, stage=1, sub="b", steps=4), imgs, imgs[:1])
    resumed.run()
    assert resumed.step == 4
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_config_validation(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stage: 1\nstepz: 3\n")
    with pytest.raises(ConfigError, match="stepz: unknown key"):
        TrainConfig.from_yaml(p)
    p.write_text("stage: 2\n")
    with pytest.raises(ConfigError, match="init: stage 2 needs"):
        TrainConfig.from_yaml(p)
    p.write_text("stage: 1\noptimizer: sgd\n")
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig.from_yaml(p)


def test_stage2_fine_tune_starts_from_the_given_lmf(tmp_path):
    imgs = _images()
    Trainer(_cfg(tmp_path, stage=1, sub="s1", steps=2), imgs, imgs[:1]).run()
    init = str(tmp_path / "s1" / "model.safetensors")
    Trainer(_cfg(tmp_path, stage=2, sub="s2", init=init, steps=3), imgs, imgs[:1]).run()
    first, _ = load_model(tmp_path / "s2" / "model.safetensors")
    tuned = Trainer(_cfg(tmp_path, stage=2, sub="s3", init=init, steps=3,
                         init_lmf=str(tmp_path / "s2" / "model.safetensors")), imgs, imgs[:1])
    for a, b in zip(first.lmf.state_dict().values(), tuned.model.lmf.state_dict().values()):
        assert torch.equal(a, b)   # before any step: exactly the LMF it was told to start from


def test_images_key_is_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stage: 1\nimages: thermal\n")
    with pytest.raises(ConfigError, match="images: expected all or visible"):
        TrainConfig.from_yaml(p)
    p.write_text("stage: 1\npixel_loss: l2\n")
    with pytest.raises(ConfigError, match="pixel_loss: expected l1 or rmse"):
        TrainConfig.from_yaml(p)


def test_rmse_loss_is_the_root_mean_square_of_the_same_error(tmp_path):
    imgs = _images()
    Trainer(_cfg(tmp_path, stage=1, sub="s1", steps=1), imgs, imgs[:1]).run()
    kw = dict(stage=2, init=str(tmp_path / "s1" / "model.safetensors"), pixel_weight=1.0, msssim_scales=1)
    l1, rmse = (Trainer(_cfg(tmp_path, sub=k, pixel_loss=k, **kw), imgs, imgs[:1]) for k in ("l1", "rmse"))
    rmse.model.load_state_dict(l1.model.state_dict())
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    # the same network and batch: RMSE >= L1 (mean of |e| <= root of mean of e^2), and not equal
    assert rmse.loss(x, y).item() > l1.loss(x, y).item()


def test_stretch_contrast_maps_percentiles_to_full_range():
    from lmfusion.data import stretch_contrast
    rng = np.random.default_rng(0)
    dim = rng.integers(80, 161, (64, 64)).astype(np.uint8)     # a dim, hazy-looking frame
    out = stretch_contrast(dim)
    assert np.percentile(out, 1) <= 3 and np.percentile(out, 99) >= 252
    order = np.argsort(dim, axis=None)
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # grey order kept
    flat = np.full((8, 8), 120, np.uint8)
    assert np.array_equal(stretch_contrast(flat), flat)          # nothing to stretch
