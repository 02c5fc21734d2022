"""The prepared GPU check: everything a CUDA machine should prove, in one run and one table.

    python bench/gpu_check.py              # on a machine with CUDA: <= 8 min (--budget-s), one table
    python bench/gpu_check.py --dry-run    # anywhere: the same steps on the CPU at tiny sizes (CI), ~1 min

Steps, in this order (each one a group of rows in the table):
1. the CUDA tests (`pytest -m cuda tests`), passed / failed / skipped;
2. per engine (torch CUDA streams fp16; ONNX Runtime CUDA EP fp32; ONNX Runtime fp16, which runs
   on the TensorRT EP when onnxruntime-gpu has it, else the CUDA EP), per size (640x512,
   1280x1024) and batch (1, 4, 8): pairs/s (batch / median call time), call latency p50/p99
   (host arrays in, host arrays out, as the Fuser calls it), the output's largest difference
   from torch fp32 on the same device in grey levels (fp16-vs-fp32 error), and GPU memory in use;
3. a 60 s `run_stream.py` with 4 synthetic camera pairs into one fusion stage on CUDA: fused
   pairs/s, capture->fused latency p50/p99, exit status.
The TensorRT rows come last but one: TensorRT builds an engine per input shape, which can take
minutes; cells the time budget cannot cover say so instead of running.

--dry-run runs the same code on the CPU (torch fp32, ONNX Runtime CPU EP; shapes 128x96 and
160x128, batches 1 and 2; a 5 s run with 2 pairs) so that CI proves the script works without a
GPU. Its numbers are CPU numbers and the table says so; nothing here reports a GPU result that
was not measured on a GPU. Exit status: 0 when every step passed or was skipped for a stated
reason, 1 when one failed, 2 without CUDA and without --dry-run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


TRT_CELL_S = 100.0   # seconds a TensorRT cell may need (engine build for a new shape + timing)


@dataclass
class Plan:
    """What one run measures. GPU: the full plan; dry run: the same steps, CPU-sized."""
    device: str
    sizes: list[tuple[int, int]]            # (w, h)
    batches: list[int]
    engines: list[tuple[str, str]]          # (engine, precision)
    iters: int                              # timed calls per cell (at least 3 unless the cell cap hits)
    cell_cap_s: float                       # a cell stops timing after this many seconds
    stream_pairs: int                       # camera pairs of the run_stream step
    stream_s: float                         # its duration, seconds
    budget_s: float                         # the whole check, seconds
    dry_run: bool

    @staticmethod
    def for_run(dry_run: bool, budget_s: float) -> "Plan":
        if dry_run:
            return Plan("cpu", [(128, 96), (160, 128)], [1, 2], [("torch", "fp32"), ("onnxruntime", "fp32")],
                        iters=2, cell_cap_s=5.0, stream_pairs=2, stream_s=5.0, budget_s=budget_s, dry_run=True)
        return Plan("cuda", [(640, 512), (1280, 1024)], [1, 4, 8],
                    [("torch", "fp16"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16")],
                    iters=30, cell_cap_s=8.0, stream_pairs=4, stream_s=60.0, budget_s=budget_s, dry_run=False)


@dataclass
class Row:
    check: str
    engine: str = ""
    size: str = ""
    batch: str = ""
    pairs_s: str = ""
    p50_ms: str = ""
    p99_ms: str = ""
    err_grey: str = ""
    gpu_mib: str = ""
    result: str = ""
    ok: bool = True                          # False: this step failed (exit status 1)


COLUMNS = [("check", "check"), ("engine", "engine"), ("size", "size"), ("batch", "batch"),
           ("pairs_s", "pairs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
           ("err_grey", "max err vs fp32 (grey)"), ("gpu_mib", "GPU MiB"), ("result", "result")]


def format_table(rows: list[Row]) -> str:
    """Rows -> one markdown table."""
    cells = [[h for _, h in COLUMNS]] + [[str(getattr(r, k)) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    line = lambda c: "| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] +
                     [line(c) for c in cells[1:]])


class Budget:
    """Seconds left of the whole check; `clock` is injectable (tests)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock, self.end = clock, clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# -- step 1: the CUDA tests -----------------------------------------------------------------------
def run_cuda_tests(budget: Budget) -> Row:
    """`pytest -m cuda tests` in a subprocess; the summary line becomes the row."""
    timeout = max(30.0, min(180.0, budget.left() - 60))
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "tests"]   # -q: pyproject addopts
    try:
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Row("CUDA tests", result=f"timed out after {timeout:.0f} s", ok=False)
    tail = [ln for ln in res.stdout.strip().splitlines() if ln.strip()]
    summary = tail[-1].strip("= ") if tail else f"no output (exit {res.returncode})"
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", summary))
    ok = res.returncode in (0, 5) and not counts.get("failed") and not counts.get("error")
    return Row("CUDA tests", result=summary, ok=ok)


# -- step 2: engines ------------------------------------------------------------------------------
def test_inputs(w: int, h: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(vis_y, ir_y) float32 (B, 1, h, w) in [0, 1]: the synthetic street (structure, not noise)."""
    import cv2
    from common.synthetic_scene import render_pair
    vis, ir = [], []
    for b in range(batch):
        v, i = render_pair(0.5 + 0.7 * b, seed=b, smoke=0.6)
        vis.append(cv2.resize(cv2.cvtColor(v, cv2.COLOR_BGR2GRAY), (w, h), interpolation=cv2.INTER_AREA))
        ir.append(cv2.resize(i, (w, h), interpolation=cv2.INTER_AREA))
    f = lambda xs: (np.stack(xs).astype(np.float32) / 255.0)[:, None]
    return f(vis), f(ir)


def gpu_used_mib(device: str) -> float | None:
    """Device memory in use (all processes, all allocators: torch and ONNX Runtime), MiB."""
    if device != "cuda":
        return None
    import torch
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2 ** 20


def engine_label(eng) -> str:
    """torch / onnxruntime[EP] as it really runs (ORT may fall back to another EP)."""
    provs = getattr(eng, "active_providers", None)
    if provs:
        return f"{eng.name}[{provs[0].replace('ExecutionProvider', '')}]"
    return eng.name


def time_cell(eng, vis: np.ndarray, ir: np.ndarray, strategy: str, iters: int, cap_s: float) -> tuple[list[float], np.ndarray]:
    """Seconds per fuse() call (one warm-up call first, which also builds lazy kernels) and the output."""
    out = eng.fuse(vis, ir, strategy)
    times: list[float] = []
    t_end = time.perf_counter() + cap_s
    while len(times) < iters and (len(times) < 3 or time.perf_counter() < t_end):
        t = time.perf_counter()
        out = eng.fuse(vis, ir, strategy)
        times.append(time.perf_counter() - t)
    return times, out


def engine_rows(plan: Plan, budget: Budget, reserve_s: float, net_loader: Callable[[], object]) -> list[Row]:
    """Step 2: one row per (engine, precision, size, batch); reference = torch fp32 on the device."""
    from lmfusion.engines import make_engine
    net = net_loader()
    strategy = net.cfg.strategy
    rows: list[Row] = []
    refs: dict[tuple, np.ndarray] = {}
    base_mib = gpu_used_mib(plan.device)

    def ref_for(w, h, b, vis, ir):
        if (w, h, b) not in refs:
            eng = make_engine("torch", net, plan.device, "fp32")
            refs[(w, h, b)] = eng.fuse(vis, ir, strategy)
        return refs[(w, h, b)]

    for name, precision in plan.engines:
        tag = f"{name} {precision}"
        try:
            eng = make_engine(name, net, plan.device, precision)
        except Exception as e:  # noqa: BLE001 - an engine that cannot load is a row, not a crash
            rows.append(Row("engine", tag, result=f"cannot load: {type(e).__name__}: {str(e).splitlines()[0]}",
                            ok=name == "onnxruntime" and "onnxruntime" in str(e)))
            continue
        label = f"{engine_label(eng)} {precision}"
        for w, h in plan.sizes:
            for b in plan.batches:
                if budget.left() < reserve_s:
                    rows.append(Row("engine", label, f"{w}x{h}", str(b),
                                    result=f"skipped: time budget ({plan.budget_s:.0f} s) spent"))
                    continue
                vis, ir = test_inputs(w, h, b)
                try:
                    times, out = time_cell(eng, vis, ir, strategy, plan.iters, plan.cell_cap_s)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory at batch 8
                    rows.append(Row("engine", label, f"{w}x{h}", str(b),
                                    result=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}", ok=False))
                    continue
                ref = out if (name, precision) == ("torch", "fp32") else ref_for(w, h, b, vis, ir)
                err = float(np.abs(out.astype(np.float64) - ref).max() * 255.0)
                used = gpu_used_mib(plan.device)
                med = statistics.median(times)
                rows.append(Row("engine", label, f"{w}x{h}", str(b), f"{b / med:.1f}",
                                f"{percentile(times, 50) * 1e3:.1f}", f"{percentile(times, 99) * 1e3:.1f}",
                                f"{err:.2f}", "-" if used is None else f"{used - base_mib:.0f}",
                                f"{len(times)} calls"))
        del eng
    return rows


def load_shipped_net():
    """The shipped default weights (speed does not depend on the values, the fp16 error does)."""
    from lmfusion.api import MODEL_FILES
    from lmfusion.weights import load_model
    return load_model(REPO / "weights" / MODEL_FILES["default"])[0].eval()


# -- step 3: run_stream with several camera pairs -------------------------------------------------
def pairs_config(plan: Plan, out_dir: Path) -> dict:
    """A pipeline of `plan.stream_pairs` synthetic camera pairs into one fusion stage."""
    gpu = plan.device == "cuda"
    return {
        "version": 1,
        "pipeline": {"stream": "gpucheck", "duration_s": plan.stream_s},
        "pairs": [{"name": f"cam{i + 1}", "capture_vis": {"url": "synthetic://", "seed": i},
                   "capture_ir": {"url": "synthetic://", "seed": i}} for i in range(plan.stream_pairs)],
        # device explicit: this step is about the GPU path (auto would pick it too, and say so)
        "fusion": {"fuser": "lmfusion", "device": plan.device, "max_batch": plan.stream_pairs if gpu else 1,
                   "max_wait_ms": 10.0 if gpu else 0.0},
        "recorder": {"out_dir": str(out_dir)},
        "detector_feed": {"enabled": False},
    }


def run_stream_row(plan: Plan, budget: Budget) -> Row:
    """Step 3: `run_stream.py` for stream_s seconds; the row is read from its --summary-json."""
    import yaml
    check = f"run_stream {plan.stream_pairs} pairs {plan.stream_s:g} s"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        cfg, summary = tmp / "pairs.yaml", tmp / "summary.json"
        cfg.write_text(yaml.safe_dump(pairs_config(plan, tmp / "rec")))
        cmd = [sys.executable, str(REPO / "run_stream.py"), "--config", str(cfg), "--quiet",
               "--summary-json", str(summary)]
        timeout = plan.stream_s + max(60.0, min(180.0, budget.left() - plan.stream_s))
        try:
            res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Row(check, result=f"timed out after {timeout:.0f} s", ok=False)
        if not summary.exists():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            return Row(check, result=f"exit {res.returncode}: {last[:120]}", ok=False)
        s = json.loads(summary.read_text())
    fusion = s["nodes"].get("fusion", {})
    choice = (fusion.get("stage") or {}).get("choice", "")
    lat = s.get("latency_ms", {})
    fused = int(fusion.get("out", 0))
    rate = fused / plan.stream_s
    ms = lambda v: "-" if v is None else f"{v:.0f}"
    return Row(check, choice.split(" (")[0], "320x256", str(plan.stream_pairs), f"{rate:.1f}",
               ms(lat.get("p50")), ms(lat.get("p99")),
               result=f"exit {s['exit_code']}, {fused} fused ({rate / plan.stream_pairs:.1f}/s per pair of 10)",
               ok=s["exit_code"] == 0 and fused > 0)


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at tiny sizes (CI, no GPU)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="seconds the whole check may take (default 480)")
    ap.add_argument("--skip", action="append", default=[], choices=("tests", "engines", "stream"),
                    help="leave a step out (repeatable)")
    args = ap.parse_args(argv)
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        print(f"error: no CUDA device visible to torch {torch.__version__}; run on a GPU machine, "
              f"or use --dry-run to check this script on the CPU", file=sys.stderr)
        return 2
    plan = Plan.for_run(args.dry_run, args.budget_s)
    budget = Budget(plan.budget_s)
    t0 = time.monotonic()
    where = (f"DRY RUN on the CPU ({os.cpu_count()} cores): CPU numbers, not GPU results" if plan.dry_run
             else f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2 ** 30:.0f} GiB), "
                  f"torch {torch.__version__}")
    print(f"gpu_check: {where}; budget {plan.budget_s:.0f} s", file=sys.stderr)
    rows: list[Row] = []
    stream_reserve = plan.stream_s + 40.0
    if "tests" not in args.skip:
        rows.append(run_cuda_tests(budget))
        print(f"  step 1 done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    if "engines" not in args.skip:
        # Non-TensorRT engines first, then the stream run, then whatever TensorRT the budget allows.
        first = dataclasses.replace(plan, engines=[e for e in plan.engines if e != ("onnxruntime", "fp16")])
        rows += engine_rows(first, budget, stream_reserve, load_shipped_net)
        print(f"  step 2 done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    if "stream" not in args.skip:
        rows.append(run_stream_row(plan, budget))
        print(f"  step 3 done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    if "engines" not in args.skip and ("onnxruntime", "fp16") in plan.engines:
        # A TensorRT engine is built per new input shape (a minute or more): a cell starts only
        # with TRT_CELL_S left, so the check stays within its budget.
        last = dataclasses.replace(plan, engines=[("onnxruntime", "fp16")])
        rows += engine_rows(last, budget, 5.0 if plan.dry_run else TRT_CELL_S, load_shipped_net)
    print(f"gpu_check ({where}); {time.monotonic() - t0:.0f} s")
    print(format_table(rows))
    failed = [r for r in rows if not r.ok]
    if failed:
        print(f"FAILED: {len(failed)} step(s): " + "; ".join(f"{r.check} {r.engine} {r.size} {r.result}".strip()
                                                          for r in failed[:3]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
