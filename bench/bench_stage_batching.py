"""The fusion stage batching several camera pairs: pairs/s and latency vs max_batch and max_wait_ms.

    python bench/bench_stage_batching.py                       # default@1/2 and default, 320x256, ORT
    python bench/bench_stage_batching.py --models half --batches 1 2 4 --waits 0 20 --cameras 2 --seconds 6
    python bench/bench_stage_batching.py --threads 2           # ORT intra-op threads (default 1)

What it runs: the real `FusionStage` (lmfusion, ONNX Runtime, the shipped weights) fed registered
320x256 synthetic pairs, batched by `pipeline.batching.MicroBatcher` exactly as the fusion worker
does (drain what is queued, `add_many`, wait at most max_wait_ms, `poll`). No sockets or other
stages: this is the stage's own cost and the batching policy, on this machine.

Two tables:
- capacity: the queue is never empty, every call fuses `max_batch` pairs. pairs/s =
  max_batch / median call time; latency = the call time (p50/p99); CPU-ms per pair = process CPU time.
- live: `--cameras` camera pairs each deliver a pair every 1/`--fps` s (all on one clock, as
  synchronised cameras or the synthetic demo do), into a drop-oldest queue of
  max(2 x cameras, max_batch) pairs (the pipeline's fusion queue). pairs/s = fused per second;
  latency = from the pair's arrival at fusion to its fused packet (p50/p99); drops = pairs the
  queue discarded; mean batch = pairs per process_batch call.

Medians of real wall time on a shared machine: the load average at start and end is printed.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.batching import BatchConfig, MicroBatcher  # noqa: E402
from pipeline.packet import Packet  # noqa: E402
from common.synthetic_scene import IR_SIZE, TRUE_IR_FROM_VIS, render_pair  # noqa: E402
from stages.fusion import FusionConfig, FusionStage  # noqa: E402

MODELS = {  # name -> FusionConfig keys
    "half": {"model": "default", "resolution_scale": 2},     # what fusion auto runs on a CPU for 320x256
    "default": {"model": "default", "resolution_scale": 1},  # full resolution (fusion auto on CUDA)
}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def frames(cameras: int, n: int = 4) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per camera pair (seed = index), n registered 320x256 (VIS BGR, IR gray) pairs."""
    out = []
    for cam in range(cameras):
        pairs = []
        for k in range(n):
            vis, ir = render_pair(0.5 * k, seed=cam)
            pairs.append((cv2.warpPerspective(vis, TRUE_IR_FROM_VIS, IR_SIZE, flags=cv2.INTER_LINEAR), ir))
        out.append(pairs)
    return out


def packet(cam: int, seq: int, t: float, pair: tuple[np.ndarray, np.ndarray]) -> Packet:
    return Packet(stream=f"cam{cam + 1}", kind="pair", seq=seq, t_mono=t, t_wall=time.time(),
                  buffers={"vis": pair[0], "ir": pair[1]})


def capacity(stage: FusionStage, imgs, batch: int, iters: int) -> dict:
    pkts = [packet(i % len(imgs), i, 0.0, imgs[i % len(imgs)][i % len(imgs[0])]) for i in range(batch)]
    stage.process_batch(pkts)                                   # warm-up (ORT allocations per shape)
    times, cpu0 = [], time.process_time()
    for _ in range(iters):
        t = time.perf_counter()
        stage.process_batch(pkts)
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    med = statistics.median(times)
    return {"pairs_s": batch / med, "p50": 1000 * med, "p99": 1000 * pct(times, 99),
            "cpu_ms": 1000 * cpu / (iters * batch)}


def live(stage: FusionStage, imgs, batch: int, wait_ms: float, fps: float, seconds: float) -> dict:
    cameras = len(imgs)
    queue: collections.deque = collections.deque()
    qlen = max(2 * cameras, batch)
    lat, sizes, drops, fused = [], [], 0, 0

    def run(items):
        sizes.append(len(items))
        return stage.process_batch([p for p in items])

    batcher = MicroBatcher(run, BatchConfig(batch, wait_ms))
    t0 = time.monotonic() + 0.05
    n_ticks = int(seconds * fps)
    arrivals = [(t0 + k / fps, cam, k) for k in range(n_ticks) for cam in range(cameras)]
    nxt = 0

    def collect(done):
        nonlocal fused
        now = time.monotonic()
        for item, _out in done:
            lat.append(1000 * (now - item.t_mono))
            fused += 1

    while nxt < len(arrivals) or queue or batcher.pending:
        now = time.monotonic()
        while nxt < len(arrivals) and arrivals[nxt][0] <= now:
            t, cam, k = arrivals[nxt]
            nxt += 1
            if len(queue) >= qlen:
                queue.popleft()
                drops += 1
            queue.append(packet(cam, k, t, imgs[cam][k % len(imgs[cam])]))
        if queue:
            group = [queue.popleft() for _ in range(min(len(queue), batch - batcher.pending))]
            collect(batcher.add_many(group))
            continue
        collect(batcher.poll())
        if nxt >= len(arrivals):
            collect(batcher.flush())
            break
        wake = arrivals[nxt][0]
        ttd = batcher.time_to_deadline()
        if ttd is not None:
            wake = min(wake, time.monotonic() + ttd)
        time.sleep(max(0.0, wake - time.monotonic()))
    span = max(1e-9, time.monotonic() - t0)
    return {"pairs_s": fused / span, "p50": pct(lat, 50), "p99": pct(lat, 99), "drops": drops,
            "mean_batch": statistics.mean(sizes) if sizes else 0.0, "offered": cameras * fps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["half", "default"], choices=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--waits", nargs="+", type=float, default=[0.0, 20.0], help="max_wait_ms values (live table)")
    p.add_argument("--cameras", type=int, default=2, help="camera pairs in the live table")
    p.add_argument("--fps", type=float, default=10.0, help="pairs per second per camera pair (the IR rate)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each live row, s")
    p.add_argument("--iters", type=int, default=6, help="calls per capacity row")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"))
    a = p.parse_args(argv)

    print(f"# load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); ORT threads {a.threads}")
    imgs = frames(max(a.cameras, max(a.batches)))
    cap_rows, live_rows = [], []
    for name in a.models:
        stage = FusionStage(FusionConfig(fuser="lmfusion", engine="onnxruntime", weights_dir=a.weights,
                                         threads=a.threads, max_batch=max(a.batches), **MODELS[name]))
        stage.start()
        label = MODELS[name]["model"] + (f"@1/{MODELS[name]['resolution_scale']}" if MODELS[name]["resolution_scale"] > 1 else "")
        for b in a.batches:
            r = capacity(stage, imgs, b, a.iters)
            cap_rows.append((label, b, r))
            print(f"  capacity {label} batch {b}: {r['pairs_s']:.2f} pairs/s", file=sys.stderr)
        for b in a.batches:
            for w in a.waits:
                if b == 1 and w != a.waits[0]:
                    continue        # batch 1 never waits: one row
                r = live(stage, imgs[:a.cameras], b, w, a.fps, a.seconds)
                live_rows.append((label, b, 0.0 if b == 1 else w, r))
                print(f"  live {label} batch {b} wait {w:g}: {r['pairs_s']:.2f} pairs/s", file=sys.stderr)
        stage.stop()
    print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    h, w = IR_SIZE[1], IR_SIZE[0]
    print(f"\ncapacity (queue always full), {w}x{h}, onnxruntime CPU, {a.iters} calls per row:\n")
    print("| model | max_batch | pairs/s | call p50 ms | call p99 ms | CPU-ms/pair |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, b, r in cap_rows:
        print(f"| {label} | {b} | {r['pairs_s']:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['cpu_ms']:.1f} |")
    print(f"\nlive: {a.cameras} camera pairs x {a.fps:g} fps (offered {a.cameras * a.fps:g} pairs/s), "
          f"{a.seconds:g} s per row, drop-oldest queue:\n")
    print("| model | max_batch | max_wait_ms | pairs/s | latency p50 ms | latency p99 ms | drops | mean batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, b, wt, r in live_rows:
        print(f"| {label} | {b} | {wt:g} | {r['pairs_s']:.2f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['drops']} | "
              f"{r['mean_batch']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
