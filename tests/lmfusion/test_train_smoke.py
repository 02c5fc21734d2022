"""The smoke model's training loop: samples carry t and A, fine-tuning starts from a model file,
and a rerun resumes. Synthetic pairs, a few steps, no data folder."""
import dataclasses

import numpy as np
import pytest
import torch

import lmfusion.train_smoke as T
from lmfusion.config import preset
from lmfusion.networks import lively_random_model
from lmfusion.smoke import SmokeConfig
from lmfusion.weights import load_model, save_model


def _pairs(n, seed):
    rng = np.random.default_rng(seed)
    return [((rng.random((72, 96, 3)) * 255).astype(np.uint8), (rng.random((72, 96)) * 255).astype(np.uint8))
            for _ in range(n)]


def test_samples_carry_the_airlight():
    vis, ir = _pairs(1, 0)[0]
    smoky = T.make_sample(vis, ir, np.random.default_rng(1), SmokeConfig(p_clean=0.0, airlight=(0.8, 0.8),
                                                                         p_dark_smoke=0.0), force=True)
    clean = T.make_sample(vis, ir, np.random.default_rng(1), SmokeConfig(p_clean=1.0))
    assert smoky["a"].shape == (1, 1, 1) and smoky["a"].item() == pytest.approx(0.8)
    assert (clean["t"] == 1).all() and smoky["t"].min() < 0.99   # the loss's has-smoke test
    assert T.batch([smoky, clean])["a"].shape == (2, 1, 1, 1)


def test_fine_tuning_starts_from_the_model_file_and_a_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "load_pairs", lambda: (_pairs(3, 1), _pairs(2, 2)))
    cfg = dataclasses.replace(preset("tiny"), mapping="smoke", strategy="transmission")
    model = lively_random_model(cfg)
    with torch.no_grad():
        model.smoke.glob[-1].bias.fill_(0.3)     # a SmokeNet that is not the zero-initialised one
    save_model(model, tmp_path / "init.safetensors")
    tc = T.TrainSmokeConfig(steps=2, batch=2, crop=48, lr=0.0, ckpt_every=1)
    net = T.train(tmp_path / "run", tc, init=tmp_path / "init.safetensors", log=lambda *_: None)
    start = load_model(tmp_path / "init.safetensors")[0].smoke.state_dict()
    for k, v in net.state_dict().items():      # lr 0: still exactly the model file's SmokeNet
        assert torch.equal(v, start[k]), k
    assert (tmp_path / "run" / "smoke_1.safetensors").exists() and (tmp_path / "run" / "smoke_2.safetensors").exists()
    lines = []
    T.train(tmp_path / "run", tc, resume=True, init=tmp_path / "init.safetensors", log=lines.append)
    assert any("start at step 2" in line for line in lines)
