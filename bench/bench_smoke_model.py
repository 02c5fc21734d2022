"""Speed of the smoke model (SmokeNet: t and A) and of dehazing, per frame, on one CPU thread.

    python bench/bench_smoke_model.py [--repeat 20]

Prints a table: median and p90 per frame for the estimate (t, A) and for dehazing (J) at
320x256 and 640x512, with IR and from VIS alone. Weights: the shipped model's SmokeNet.
Times are the thread's CPU time (time.thread_time), what one core spends, so a run beside other
jobs is comparable; on an idle machine it matches the wall time.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lmfusion.smoke_model import dehaze
from lmfusion.weights import load_model


def _time(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        ts.append(1000 * (time.thread_time() - t0))
    return float(np.median(ts)), float(np.percentile(ts, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/lmfusion.safetensors")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = load_model(args.weights)[0].smoke.eval()
    print(f"### Smoke model, one CPU thread (torch {torch.__version__}), {args.repeat} runs\n")
    print("| frame | input | estimate t, A: median / p90 CPU ms | + dehaze: median / p90 CPU ms |\n|---|---|---|---|")
    rng = np.random.default_rng(0)
    for w, h in ((320, 256), (640, 512)):
        vis = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
        ir = torch.from_numpy(rng.random((1, 1, h, w), dtype=np.float32))
        for name, i in (("VIS + IR", ir), ("VIS alone", None)):
            with torch.inference_mode():
                est = _time(lambda: net(vis, i), args.repeat)
                both = _time(lambda: dehaze(vis, *net(vis, i)), args.repeat)
            print(f"| {w}x{h} | {name} | {est[0]:.1f} / {est[1]:.1f} | {both[0]:.1f} / {both[1]:.1f} |")


if __name__ == "__main__":
    main()
