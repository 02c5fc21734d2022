import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import lmfusion
from lmfusion.config import preset
from lmfusion.networks import LMFusionNet
from lmfusion.weights import load_model, save_model


@pytest.fixture
def weights_dir(tmp_path):
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("tiny")), tmp_path / "lmfusion.safetensors", {"steps": 1})
    return tmp_path


def _pair(h=37, w=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


def test_round_trip_gives_the_same_outputs(weights_dir):
    m, prov = load_model(weights_dir / "lmfusion.safetensors")
    assert prov == {"steps": 1}
    torch.manual_seed(0)
    ref = LMFusionNet(preset("tiny")).eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(x, x), ref(x, x))


def test_fuse_conventions(weights_dir):
    f = lmfusion.load(weights_dir)
    vis, ir = _pair()
    out = f.fuse(vis, ir)
    assert out.shape == vis.shape and out.dtype == np.uint8        # colour in -> BGR out
    assert f.fuse(vis[..., 1], ir).shape == ir.shape               # gray in -> gray out
    assert f.fuse(vis, np.dstack([ir] * 3)).shape == vis.shape     # 3-channel gray IR accepted
    assert f.clear(vis).shape == vis.shape
    batch = f.fuse_batch([vis, vis], [ir, ir])
    assert np.array_equal(batch[0], out) and np.array_equal(batch[1], out)


def test_chroma_comes_from_vis_by_default(weights_dir):
    import cv2
    f = lmfusion.load(weights_dir)
    vis, ir = _pair(seed=3)
    ycc = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)
    fused_y = f.fuse(ycc[..., 0], ir)                  # the gray path fuses the same luminance
    expected = cv2.cvtColor(np.dstack([fused_y, ycc[..., 1:]]), cv2.COLOR_YCrCb2BGR)
    assert np.array_equal(f.fuse(vis, ir), expected)
    avg = lmfusion.load(weights_dir, chroma="average").fuse(vis, ir)
    crcb_avg = ((ycc[..., 1:].astype(np.uint16) + 128) // 2).astype(np.uint8)
    assert np.array_equal(avg, cv2.cvtColor(np.dstack([fused_y, crcb_avg]), cv2.COLOR_YCrCb2BGR))


@pytest.mark.parametrize("vis,ir,match", [
    (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8), "vis: expected dtype uint8"),
    (np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10), np.uint8), "vis: expected HxW gray or HxWx3"),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12), np.uint8), "sizes differ: vis 10x10, ir 12x10"),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint16), "ir: expected dtype uint8"),
])
def test_bad_inputs_give_one_line_errors(weights_dir, vis, ir, match):
    f = lmfusion.load(weights_dir)
    with pytest.raises(lmfusion.InputError, match=match) as e:
        f.fuse(vis, ir)
    assert "\n" not in str(e.value)


def test_frames_too_small_for_the_network_give_one_line_errors(tmp_path):
    # The default preset's latent model (untrained) at half resolution: a 64 px frame is 8 px in
    # its 1/4-scale trunk, too few for the dilation-8 block (it would die inside torch's padding).
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("default")), tmp_path / "lmfusion.safetensors", {"note": "untrained, test"})
    f = lmfusion.load(tmp_path, model="default", engine_options={"resolution_scale": 2})
    assert f.min_size == 72
    with pytest.raises(lmfusion.InputError, match="70x64: this model needs at least 72x72 px") as e:
        f.fuse(np.zeros((64, 70, 3), np.uint8), np.zeros((64, 70), np.uint8))
    assert "\n" not in str(e.value)
    assert f.fuse(np.zeros((72, 80, 3), np.uint8), np.zeros((72, 80), np.uint8)).shape == (72, 80, 3)


def test_missing_weights(tmp_path):
    with pytest.raises(lmfusion.WeightsError, match="weights file not found"):
        lmfusion.load(tmp_path)


def _copy_with_metadata(src_dir, dst_dir, edit):
    """Copy the weights file with its metadata changed by ``edit(meta)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    src = src_dir / "lmfusion.safetensors"
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata())
    edit(meta)
    save_file(load_file(str(src)), str(dst_dir / "lmfusion.safetensors"), metadata=meta)


def test_weights_of_another_format_version(weights_dir, tmp_path):
    _copy_with_metadata(weights_dir, tmp_path, lambda m: m.update(format_version="999"))
    with pytest.raises(lmfusion.WeightsError, match="format version '999'"):
        lmfusion.load(tmp_path)


def test_weights_of_another_architecture(weights_dir, tmp_path):
    def wider(meta):
        cfg = json.loads(meta["config"])
        cfg["lmf"]["width"] = 16                 # claims a wider LMF than the tensors hold
        meta["config"] = json.dumps(cfg)
    _copy_with_metadata(weights_dir, tmp_path, wider)
    with pytest.raises(lmfusion.WeightsError, match="do not match architecture"):
        lmfusion.load(tmp_path)


def test_a_file_that_is_not_safetensors(tmp_path):
    (tmp_path / "lmfusion.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(lmfusion.WeightsError, match="not a readable safetensors"):
        lmfusion.load(tmp_path)


def test_cuda_or_fp16_on_a_cpu_machine_is_a_clear_error(weights_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(lmfusion.LMFusionError, match="CUDA is not available"):
        lmfusion.load(weights_dir, device="cuda")
    with pytest.raises(lmfusion.LMFusionError, match="fp16.*needs device='cuda'"):
        lmfusion.load(weights_dir, precision="fp16")


def test_unknown_strategy(weights_dir):
    with pytest.raises(lmfusion.ConfigError, match="strategy 'best'"):
        lmfusion.load(weights_dir, strategy="best")
