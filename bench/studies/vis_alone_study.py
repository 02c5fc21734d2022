"""Smoke removal from VIS alone (no IR): smoke-model weights on region-depth haze.

    python bench/studies/vis_alone_study.py [--seeds 7000 8000] [--weights NAME=FILE ...]

Validation: the smoke model's validation slice (RoadScene train-split pairs with index % 10 == 5,
never trained on; not the test split) under haze made the way indoor haze sets are made (RESIDE's
recipe: grey airlight 0.7-1.0, t = exp(-beta * depth), no noise) over a pseudo-depth that follows
the image's regions (``lmfusion.smoke.scene_depth``), at the scene's contrast and at 1.8x it.
Each model file (under the current code), beside the dark channel prior and the input: Y PSNR
of J against the clean image, and the mean absolute error of t and of A.
Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lmfusion import baselines  # noqa: E402
from lmfusion.smoke_model import dehaze  # noqa: E402
from lmfusion.train_smoke import VAL_SCENE_HAZE, load_pairs, make_sample, y_psnr  # noqa: E402
from lmfusion.weights import load_model  # noqa: E402

NAN = float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7000])
    ap.add_argument("--weights", nargs="+", default=["shipped=weights/lmfusion.safetensors"])
    args = ap.parse_args()
    _, val = load_pairs()
    sets = {}
    for seed in args.seeds:
        for gain in (1.0, 1.8):
            sets[f"seed {seed}, {gain:g}x"] = [make_sample(v, i, np.random.default_rng(seed + k), VAL_SCENE_HAZE,
                                                           force=True, gain=(gain, gain))
                                               for k, (v, i) in enumerate(val)]
    nets = {}
    for spec in args.weights:
        name, path = spec.split("=", 1)
        nets[name] = load_model(Path(path))[0].smoke.eval()
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    for sname, samples in sets.items():
        clean = [torch.from_numpy(s["clean"]) for s in samples]
        hazy = [torch.from_numpy(s["smoky"])[None] for s in samples]
        true_t = [torch.from_numpy(s["t"]) for s in samples]
        rows.setdefault("input", {})[sname] = (np.mean([y_psnr(h[0], c) for h, c in zip(hazy, clean)]),) + (NAN,) * 2
        ps = []
        for h, c in zip(hazy, clean):
            bgr = np.round(h[0].numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)
            j = baselines.dehaze_dcp(bgr)[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255
            ps.append(y_psnr(torch.from_numpy(j.copy()), c))
        rows.setdefault("dark channel prior + guided filter", {})[sname] = (np.mean(ps),) + (NAN,) * 2
        for nname, net in nets.items():
            ps, mae, aerr = [], [], []
            with torch.no_grad():
                for h, c, tt, a_true in zip(hazy, clean, true_t, [s["a"] for s in samples]):
                    t, a = net(h, None)
                    ps.append(y_psnr(dehaze(h, t, a, net.cfg.t0)[0], c))
                    mae.append(float((t[0] - tt).abs().mean()))
                    aerr.append(float((a - float(a_true.ravel()[0])).abs().mean()))
            rows.setdefault(nname, {})[sname] = (np.mean(ps), np.mean(mae), np.mean(aerr))
    names = list(sets)
    print("| VIS alone, Y PSNR of J (dB) | " + " | ".join(names) + " | mean dB | t MAE | A MAE |")
    print("|---|" + "---|" * (len(names) + 3))
    for key, r in rows.items():
        cells = [f"{r[n][0]:.2f}" for n in names]
        t_mae, a_mae = (np.mean([r[n][i] for n in names]) for i in (1, 2))
        print(f"| {key} | " + " | ".join(cells) + f" | {np.mean([r[n][0] for n in names]):.2f} | "
              f"{t_mae:.3f} | {a_mae:.3f} |")


if __name__ == "__main__":
    main()
