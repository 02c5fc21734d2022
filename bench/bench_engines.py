"""Engines: throughput and latency per engine, precision, resolution and batch, with MACs and the
fraction of the device's peak reached; and the fp16-vs-fp32 output difference.

    python bench/bench_engines.py                                 # default preset, CPU engines, 320x256 + 640x512, batch 1
    python bench/bench_engines.py --preset paper --sizes 320x256 640x512 1280x1024 --batches 1 2 4 --iters 10
    python bench/bench_engines.py --device cuda --iters 50       # on a GPU: torch fp16/fp32 streams, ORT CUDA/TensorRT

Each row times ``engine.fuse(vis_y, ir_y)`` on numpy (B, 1, H, W) float32 arrays, as the Fuser
calls it (host->device->host included on a GPU): latency p50/p99 per call, throughput in pairs/s
(B / median call time), GMAC per pair (Conv2d + Linear, forward hooks), achieved GMAC/s and its
fraction of the peak. The peak is *measured in the same run*: a large fp32 matmul on the CPU
(torch, same thread count), an fp16 matmul on a GPU. With few iterations p99 is close to the max.

The precision table compares fp16 with fp32 outputs at each size on random-content inputs:
max abs difference in grey levels and PSNR (dB). On the CPU fp16 is torch's CPU half kernels
(slow, correctness only); on a GPU it is the engine's fp16 path.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_model import build, count_macs, load_note, time_call  # noqa: E402
from lmfusion.engines import make_engine  # noqa: E402
from lmfusion.errors import LMFusionError  # noqa: E402


def peak_gmacs(device: str, threads: int) -> tuple[float, str]:
    """Best-of-3 GMAC/s of a large matmul: the practical peak of this device right now."""
    if device == "cuda":
        n, dtype = 8192, torch.float16
        a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
        a @ b
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - t) / 10)
        return n ** 3 / best / 1e9, f"fp16 {n}x{n} matmul on {torch.cuda.get_device_name()}"
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(time_call(lambda: a @ b, 3, warmup=1))
    return n ** 3 / best / 1e9, f"fp32 {n}x{n} matmul, torch, {threads} threads"


def engine_rows(device: str) -> list[tuple[str, str, dict]]:
    """(engine name, precision, engine options) to run on ``device``."""
    if device == "cuda":
        return [("torch", "fp16", {}), ("torch", "fp32", {}),
                ("onnxruntime", "fp16", {}), ("onnxruntime", "fp32", {})]
    # The CPU real-time option: the network at 1/2 size, full-resolution detail added back.
    return [("torch", "fp32", {}), ("onnxruntime", "fp32", {}),
            ("onnxruntime", "fp32", {"resolution_scale": 2})]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", help="model preset (or a bench_model candidate)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", nargs="+", default=["320x256", "640x512"], help="WxH")
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--iters", type=int, default=3, help="timed calls per row")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    ap.add_argument("--no-precision", action="store_true", help="skip the fp16-vs-fp32 table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here (torch CPU build or no GPU)")

    peak, how = peak_gmacs(args.device, args.threads)
    print(f"# bench_engines: preset {args.preset}, device {args.device}; {load_note()} at start")
    print(f"Peak: {peak:.0f} GMAC/s measured now ({how}).\n")
    print("| engine | precision | size | batch | GMAC/pair | p50 ms | p99 ms | pairs/s | GMAC/s | % of peak |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cache = tempfile.TemporaryDirectory(prefix="lmfusion-bench-")
    strategy = build(args.preset).cfg.strategy
    for name, precision, opts in engine_rows(args.device):
        if name == "onnxruntime":
            opts = {**opts, "threads": args.threads, "cache_dir": cache.name}
        try:
            eng = make_engine(name, build(args.preset), args.device, precision, **opts)
        except LMFusionError as e:
            print(f"| {name} | {precision} | - | - | - | - | - | - | - | not run: {e} |")
            continue
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            f = opts.get("resolution_scale", 1)  # the network sees (h/f, w/f)
            gmac = count_macs(build(args.preset), h // f, w // f, strategy=strategy) / 1e9
            for b in args.batches:
                rng = np.random.default_rng(0)
                v, i = (rng.random((b, 1, h, w), dtype=np.float32) for _ in range(2))
                ts = sorted(time_call(lambda: eng.fuse(v, i, strategy), args.iters))
                p50 = statistics.median(ts)
                p99 = ts[min(len(ts) - 1, math.ceil(0.99 * len(ts)) - 1)]
                rate = b / p50
                print(f"| {getattr(eng, 'name', name)} | {precision} | {w}x{h} | {b} | {gmac:.2f} | "
                      f"{p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {rate:.2f} | {rate * gmac:.1f} | "
                      f"{100 * rate * gmac / peak:.1f} |", flush=True)
                if hasattr(eng, "submit"):  # the pipelined API: frames overlap, no per-call sync
                    n = max(args.iters, 3)
                    t = time.perf_counter()
                    for k in range(n):
                        eng.submit(v, i, strategy, tag=k)
                    eng.collect(block=True)
                    rate = n * b / (time.perf_counter() - t)
                    print(f"| {eng.name} submit/collect | {precision} | {w}x{h} | {b} | {gmac:.2f} | - | - | "
                          f"{rate:.2f} | {rate * gmac:.1f} | {100 * rate * gmac / peak:.1f} |", flush=True)
        del eng

    if not args.no_precision:
        print("\n| precision check | size | max abs diff (grey levels) | PSNR dB |")
        print("|---|---|---:|---:|")
        dev = args.device
        net32 = build(args.preset).to(dev)
        net16 = build(args.preset).to(dev).half()
        # CPU half kernels are slow: the smallest size is enough to know the precision loss.
        for size in args.sizes if dev == "cuda" else args.sizes[:1]:
            w, h = (int(v) for v in size.lower().split("x"))
            x = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
            try:
                with torch.inference_mode():
                    ref = net32(x[:1], x[1:], strategy=strategy).float().cpu().numpy()
                    got = net16(x[:1].half(), x[1:].half(), strategy=strategy).float().cpu().numpy()
            except RuntimeError as e:  # a CPU build without half kernels for some op
                print(f"| fp16 vs fp32 ({dev}) | {w}x{h} | skipped: {str(e).splitlines()[0]} | |")
                continue
            print(f"| fp16 vs fp32 ({dev}, torch) | {w}x{h} | {np.abs(got - ref).max() * 255:.2f} | "
                  f"{psnr(got, ref):.1f} |", flush=True)
        print("\nInputs are uniform noise (worst case for rounding); weights as in bench_model.build().")
    print(f"\n{load_note()} at end.")


if __name__ == "__main__":
    main()
