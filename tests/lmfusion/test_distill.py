"""Distillation: a student learns a teacher Fuser's outputs (a few steps on tiny configs)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lmfusion.api import Fuser
from lmfusion.config import LMFConfig, preset
from lmfusion.distill import DistillConfig, distill, smoky_batch
from lmfusion.engines import TorchEngine
from lmfusion.errors import ConfigError
from lmfusion.networks import LMFusionNet
from lmfusion.weights import load_model

from test_engines import lively, pairs  # noqa: E402  (tests/lmfusion is on sys.path under pytest)


def gray_pairs(n=3, h=80, w=96):
    vis, ir = pairs(n, h, w, colour=False)
    return list(zip(vis, ir))


def teacher() -> Fuser:
    net = lively("tiny")
    return Fuser(TorchEngine(net), net.size_multiple, "average", model_name="tiny")


STUDENT = dataclasses.replace(preset("tiny"), name="tiny_student",
                              lmf=LMFConfig(width=4, dilations=(1,), scale=4, global_branch=True,
                                            affine_head=True), lmf_on_ir=False)


def test_student_gets_closer_to_the_teacher_and_is_saved(tmp_path):
    # The student keeps the teacher's autoencoder shapes, so it starts from the teacher's encoder
    # and decoder and learns a narrower, coarser LMF that skips the IR latent.
    cfg = DistillConfig(steps=30, batch=2, crop=32, lr=3e-3, warmup=1, log_every=10,
                        ssim_weight=0.2, val_batches=2)
    logs = []
    student, rows = distill(teacher(), STUDENT, gray_pairs(), cfg, out=tmp_path / "s.safetensors",
                            log=logs.append)
    first = np.mean([r["loss"] for r in rows[:5]])
    last = np.mean([r["loss"] for r in rows[-5:]])
    assert last < 0.5 * first
    assert rows[-1]["agreement_psnr"] > rows[9]["agreement_psnr"] + 1.0  # dB
    loaded, prov = load_model(tmp_path / "s.safetensors")
    assert loaded.cfg == STUDENT
    assert prov["distilled_from"].startswith("lmfusion-tiny/average")
    assert prov["agreement_psnr_db"] == pytest.approx(rows[-1]["agreement_psnr"])
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x, x), student(x, x))
    assert "copied" in logs[0] and "frozen" not in logs[0]


def test_matching_autoencoder_is_copied_and_can_be_frozen():
    t = teacher()
    cfg = DistillConfig(steps=2, batch=2, crop=32, freeze_autoencoder=True, val_batches=1, log_every=1)
    logs = []
    student, _ = distill(t, STUDENT, gray_pairs(), cfg, log=logs.append)
    assert "copied and frozen" in logs[0]
    for k, v in t.engine.model.encoder.state_dict().items():
        assert torch.equal(student.encoder.state_dict()[k], v)


def test_student_of_another_shape_starts_from_scratch():
    other = dataclasses.replace(STUDENT, autoencoder=dataclasses.replace(STUDENT.autoencoder, enc_width=4))
    logs = []
    distill(teacher(), other, gray_pairs(), DistillConfig(steps=1, batch=1, crop=32, val_batches=1),
            log=logs.append)
    assert "from scratch" in logs[0]


def test_batches_are_aligned_crops_with_smoke_over_both():
    vis = np.tile(np.arange(96, dtype=np.uint8), (80, 1))
    cfg = DistillConfig(batch=3, crop=32, smoke=dataclasses.replace(DistillConfig().smoke, p_clean=1.0))
    v, i = smoky_batch([(vis, vis.copy())], cfg, np.random.default_rng(0))
    assert v.shape == i.shape == (3, 1, 32, 32) and v.dtype == np.float32
    np.testing.assert_allclose(v, i, atol=0.05)  # no smoke drawn: both crops of one place


def test_bad_crop_and_unregistered_pairs_are_errors():
    with pytest.raises(ConfigError, match="multiple of 4"):
        distill(teacher(), STUDENT, gray_pairs(), DistillConfig(steps=1, crop=30))
    bad = [(np.zeros((40, 40), np.uint8), np.zeros((40, 48), np.uint8))]
    with pytest.raises(ConfigError, match="differ"):
        distill(teacher(), STUDENT, bad, DistillConfig(steps=1, crop=32, batch=1))


def test_unclamped_forward_is_forward_before_the_clamp():
    from lmfusion.distill import _fuse_unclamped
    for name in ("tiny", "default"):
        net = lively(name)
        v, i = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)  # default: dilation 8 at 1/2
        with torch.no_grad():
            raw = _fuse_unclamped(net, v, i)
            assert torch.allclose(raw.clamp(0, 1), net(v, i), atol=1e-6)
    net = LMFusionNet(STUDENT)  # lmf_on_ir=False path
    with torch.no_grad():
        assert torch.allclose(_fuse_unclamped(net, v, i).clamp(0, 1), net(v, i), atol=1e-6)
