"""The model alone: ms per frame pair for each preset and size, torch eager vs ONNX Runtime.

    python bench/bench_model.py                                  # paper, default, tiny; 320x256, 640x512
    python bench/bench_model.py --presets default tiny --sizes 320x256 --iters 10
    python bench/bench_model.py --presets default default_vis_lmf --sizes 320x256 --threads 1
    python bench/bench_model.py --fuser --presets default --sizes 320x256 --threads 1   # whole Fuser, 1x and 1/2 res

Prints a Markdown table: GMAC per pair (VIS and IR through encoder and LMF as one batch, fusion,
decoder), then the median ms per pair of torch eager and of ONNX Runtime (CPU EP), run back to
back in one process with the same thread count (default 2: this machine's cores), and fps.
Weights are random unless weights/ holds the preset's trained file: speed does not depend on
them. The load average is printed, since the 2 cores are shared (e.g. with training).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmfusion.config import LMFConfig, ModelConfig, PRESETS  # noqa: E402
from lmfusion.networks import LMFusionNet, lively_random_model  # noqa: E402

# Variants measured beside the presets (proposals for config.py; the lead owns the presets).
CANDIDATES: dict[str, ModelConfig] = {
    # What the default costs if only LMF stops mapping the IR latent (LWIR sees through smoke,
    # so its latent needs no de-smoking).
    "default_vis_lmf": ModelConfig(name="default_vis_lmf",
                                   lmf=LMFConfig(width=48, dilations=(1, 2, 4, 8, 1, 2), scale=4,
                                                 global_branch=True, affine_head=True),
                                   strategy="detail", lmf_on_ir=False),
}
TRAINED = {"default": ROOT / "weights" / "lmfusion.safetensors",
           "paper": ROOT / "weights" / "lmfusion_paper.safetensors"}


def config(name: str) -> ModelConfig:
    if name in PRESETS:
        return PRESETS[name]
    if name in CANDIDATES:
        return CANDIDATES[name]
    raise SystemExit(f"--presets: unknown {name!r} (expected one of: {', '.join([*PRESETS, *CANDIDATES])})")


def build(name: str) -> LMFusionNet:
    """Trained weights when shipped, else random ones made lively: the zero-initialised heads
    perturbed and the decoder scaled so the output spans [0, 1] (a flat output would make the
    fp16-vs-fp32 comparison meaningless; speed does not depend on the values)."""
    cfg = config(name)
    path = TRAINED.get(name)
    if path is not None and path.exists():
        from lmfusion.weights import load_model
        return load_model(path)[0].eval()
    return lively_random_model(cfg)


def count_macs(model: LMFusionNet, h: int, w: int, batch: int = 1, strategy: str | None = None) -> int:
    """Multiply-accumulates of one forward(vis, ir) over every Conv2d and Linear (forward hooks).

    Counts what dominates: convolutions and the MLPs. Element-wise ops (ReLU, attention products,
    fusion) and pooling are memory-bound extras and are not counted.
    """
    total = 0

    def conv_hook(m: torch.nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: torch.nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        x = torch.zeros(batch, 1, h, w)
        with torch.inference_mode():
            model(x, x, strategy=strategy)
    finally:
        for hk in hooks:
            hk.remove()
    return total


def time_call(fn, iters: int, warmup: int = 1) -> list[float]:
    """Seconds per call, after ``warmup`` untimed calls."""
    return time_call_cpu(fn, iters, warmup)[0]


def time_call_cpu(fn, iters: int, warmup: int = 1) -> tuple[list[float], float]:
    """-> (wall seconds per call, mean CPU seconds per call of this process, all threads).

    CPU time barely depends on what else runs on the machine, so with one thread it is the
    load-independent cost of a call (wall time on an idle core); with more threads it also
    counts time threads spend spinning while they wait for each other.
    """
    for _ in range(warmup):
        fn()
    out = []
    c = time.process_time()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out, (time.process_time() - c) / iters


def load_note() -> str:
    la = os.getloadavg()
    return f"load average {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} on {os.cpu_count()} cores"


def test_pairs(w: int, h: int, n: int = 6) -> tuple[list, str]:
    """RoadScene test pairs resized to w x h when ../shared/data is there, else synthetic ones."""
    import cv2
    try:
        from lmfusion import data as D
        pairs = [D.load_roadscene_pair(p) for p in D.roadscene_pairs("test")[:n]]
        src = f"{len(pairs)} RoadScene test pairs"
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        pairs = [(cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2),
                  cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2)) for _ in range(n)]
        src = f"{n} synthetic pairs (no ../shared/data)"
    size = (w, h)
    return [(cv2.resize(v, size, interpolation=cv2.INTER_AREA), cv2.resize(i, size, interpolation=cv2.INTER_AREA))
            for v, i in pairs], src


def bench_fuser(args) -> None:
    """The whole Fuser (colour split, padding, ORT, back to BGR) at full and 1/2 resolution."""
    from lmfusion.api import Fuser
    from lmfusion.engines import make_engine
    cache = tempfile.TemporaryDirectory(prefix="lmfusion-bench-")
    print("| preset | size | resolution_scale | CPU-ms per pair | fps on idle cores (est.) | wall ms |")
    print("|---|---|---:|---:|---:|---:|")
    src = ""
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        pairs, src = test_pairs(w, h)
        for name in args.presets:
            for scale in (1, 2):
                net = build(name)
                eng = make_engine("onnxruntime", net, "cpu", "fp32", threads=args.threads,
                                  cache_dir=cache.name, resolution_scale=scale)
                f = Fuser(eng, net.size_multiple, net.cfg.strategy)
                f.fuse(*pairs[0])
                cpu, wall = [], []
                for _ in range(args.iters):
                    for v, i in pairs:
                        c, t = time.process_time(), time.perf_counter()
                        f.fuse(v, i)
                        cpu.append(time.process_time() - c)
                        wall.append(time.perf_counter() - t)
                c_ms = statistics.median(cpu) * 1e3
                print(f"| {name} | {w}x{h} | {scale} | {c_ms:.0f} | {1e3 / c_ms * args.threads:.1f} | "
                      f"{statistics.median(wall) * 1e3:.0f} |", flush=True)
    print(f"\nInputs: {src}; medians over {args.iters} passes. {load_note()} at end.")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["paper", "default", "tiny"])
    ap.add_argument("--sizes", nargs="+", default=["320x256", "640x512"], help="WxH")
    ap.add_argument("--iters", type=int, default=3, help="timed runs per cell (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--no-ort", action="store_true", help="torch eager only")
    ap.add_argument("--fuser", action="store_true",
                    help="time the whole Fuser on ONNX Runtime at resolution_scale 1 and 2 instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.fuser:
        print(f"# bench_model --fuser: {args.threads} threads; {load_note()} at start\n")
        return bench_fuser(args)
    from lmfusion.onnx_engine import OrtEngine

    print(f"# bench_model: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.iters}; {load_note()} at start\n")
    print("| preset | size | GMAC/pair | torch eager ms | ORT CPU ms | ORT/torch | best fps | torch CPU-ms | ORT CPU-ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cache = tempfile.TemporaryDirectory(prefix="lmfusion-bench-")
    for name in args.presets:
        net = build(name)
        strategy = net.cfg.strategy
        ort = None if args.no_ort else OrtEngine(net, threads=args.threads, cache_dir=cache.name)
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            gmac = count_macs(net, h, w, strategy=strategy) / 1e9
            rng = np.random.default_rng(0)
            v, i = (rng.random((1, 1, h, w), dtype=np.float32) for _ in range(2))
            tv, ti = torch.from_numpy(v), torch.from_numpy(i)

            def run_torch():
                with torch.inference_mode():
                    net(tv, ti, strategy=strategy)
            walls, cpu_torch = time_call_cpu(run_torch, args.iters)
            t_torch = statistics.median(walls) * 1e3
            if ort is not None:
                walls, cpu_ort = time_call_cpu(lambda: ort.fuse(v, i, strategy), args.iters)
                t_ort = statistics.median(walls) * 1e3
                best = min(t_torch, t_ort)
                print(f"| {name} | {w}x{h} | {gmac:.2f} | {t_torch:.1f} | {t_ort:.1f} | "
                      f"{t_ort / t_torch:.2f} | {1e3 / best:.1f} | {cpu_torch * 1e3:.0f} | {cpu_ort * 1e3:.0f} |",
                      flush=True)
            else:
                print(f"| {name} | {w}x{h} | {gmac:.2f} | {t_torch:.1f} | - | - | {1e3 / t_torch:.1f} | "
                      f"{cpu_torch * 1e3:.0f} | - |", flush=True)
    print(f"\n{load_note()} at end. ORT/torch < 1: ONNX Runtime is faster. CPU-ms: CPU time of this "
          f"process per pair (all threads); with --threads 1 it is the load-independent cost of a pair.")


if __name__ == "__main__":
    main()
