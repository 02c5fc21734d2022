"""The evaluation helpers and the fuse/clear CLI, on synthetic images (no ../shared/data)."""
import cv2
import numpy as np
import pytest
import torch

import lmfusion
from lmfusion import baselines
from lmfusion.__main__ import main
from lmfusion.config import preset
from lmfusion.evaluate import SmokyPair, eval_fusion, make_grid
from lmfusion.networks import LMFusionNet
from lmfusion.weights import save_model


@pytest.fixture
def weights_dir(tmp_path):
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("tiny")), tmp_path / "w" / "lmfusion.safetensors")
    return tmp_path / "w"


def _pair(seed):
    rng = np.random.default_rng(seed)
    vis = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), (0, 0), 2)
    ir = cv2.GaussianBlur(rng.integers(0, 256, (64, 80), dtype=np.uint8), (0, 0), 2)
    smoky = (0.4 * vis + 0.6 * 200).astype(np.uint8)
    return SmokyPair(f"p{seed}", vis, smoky, ir, ir)


def test_eval_fusion_scores_every_method_and_grid_has_a_column_each(tmp_path, weights_dir):
    f = lmfusion.load(weights_dir)
    pairs = [_pair(0), _pair(1)]
    methods = {"average": baselines.fuse_average, "laplacian": baselines.fuse_laplacian, "lmf": f.fuse}
    res = eval_fusion(methods, pairs, smoky=True)
    assert set(res) == set(methods)
    for r in res.values():
        assert {"EN", "SD", "SF", "AG", "MI", "VIF", "Qabf", "SSIM", "SSIM(F,VIS)", "ms/pair"} <= set(r)
    # the Laplacian keeps more edge strength than the average: Qabf must say so
    assert res["laplacian"]["Qabf"] > res["average"]["Qabf"]
    make_grid(methods, f, pairs, tmp_path / "grid.png", rows=2, height=64)
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape[0] == 28 + 2 * 64 and grid.shape[1] == 6 * round(64 * 4 / 3)  # VIS, IR, 3 methods, clear


def test_cli_fuse_files_and_folders(tmp_path, weights_dir):
    p = _pair(2)
    (tmp_path / "v").mkdir(), (tmp_path / "i").mkdir()
    for k in range(2):
        cv2.imwrite(str(tmp_path / "v" / f"{k}.png"), p.vis_clean)
        cv2.imwrite(str(tmp_path / "i" / f"{k}.png"), p.ir_clean)
    assert main(["fuse", "--vis", str(tmp_path / "v"), "--ir", str(tmp_path / "i"),
                 "-o", str(tmp_path / "out"), "--weights", str(weights_dir)]) == 0
    outs = sorted((tmp_path / "out").iterdir())
    assert [o.name for o in outs] == ["0.png", "1.png"]
    expect = lmfusion.load(weights_dir).fuse(p.vis_clean, p.ir_clean)
    assert np.array_equal(cv2.imread(str(outs[0])), expect)
    assert main(["clear", "--vis", str(tmp_path / "v" / "0.png"), "-o", str(tmp_path / "c.png"),
                 "--weights", str(weights_dir)]) == 0
    assert cv2.imread(str(tmp_path / "c.png")).shape == p.vis_clean.shape


def test_cli_errors_are_one_line_and_exit_2(tmp_path, weights_dir, capsys):
    assert main(["fuse", "--vis", str(tmp_path / "nope.png"), "--ir", str(tmp_path / "nope.png"),
                 "-o", str(tmp_path / "o.png"), "--weights", str(weights_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope.png: no such file or folder" in err and "\n" not in err
    assert main(["fuse", "--vis", "a", "--ir", "b", "-o", "c", "--weights", str(tmp_path / "empty")]) == 2
    assert "weights file not found" in capsys.readouterr().err
