"""Per-stage cost of one fused pair of the demo pipeline, and the pipeline's overhead above the model.

    python bench/bench_pipeline.py                  # the demo: synthetic VIS 640x480@20 + IR 320x256@10, fusion auto
    python bench/bench_pipeline.py --iters 100 --fuser-threads 1

Runs every step a fused pair goes through, in this process, on the demo's frames, with the
stages' own code (no sockets): the wire codec on each of the 4 process hops (VIS x2 and IR into
registration, the pair into fusion, the fused packet out to the recorder and the detector feed),
registration (pairing + the VIS->IR warp), the fusion stage (each real call split by timing the
calls nested in it: the model alone, i.e. the engine on the network-sized inputs plus the smoke model; the
reduced-resolution wrapper: down-sampling, detail, up-sampling; the Fuser around the engine:
colour conversion, padding, a smoke model if the weights have one; the stage itself), and the
recorder's H.264 encode. Each
step's cost is the median process CPU time per fused pair (load-independent: what one idle core
spends), so the table is comparable across runs on a shared machine. The synthetic cameras'
rendering is the cameras' work, not the pipeline's, and is listed apart.

overhead = (every pipeline step but the model) / (the model alone): the CPU the pipeline spends
per pair beyond the network. The ZeroMQ transfer itself (ipc) is not in the table: it is a
kernel copy of the same bytes the codec rows already handle, measured at ~0.05 ms per hop.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# As the runner starts every stage: one OpenMP thread, so thread CPU time is the whole cost.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pipeline.codec import decode, encode  # noqa: E402
from pipeline.packet import Packet  # noqa: E402


def cpu_ms(fn: Callable[[], object], iters: int, warmup: int = 2) -> float:
    """Median CPU milliseconds of one call (time.process_time: every thread of this process, so
    libraries that use helper threads, x264 and ONNX Runtime among them, are counted in full)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return statistics.median(out) * 1e3


def hop(packet: Packet) -> Packet:
    """What one process hop costs besides the kernel copy: encode on one side, decode on the other."""
    return decode([bytes(f) if not isinstance(f, bytes) else f for f in encode(packet)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--iters", type=int, default=40, help="timed calls per step (median)")
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="pipeline YAML (its fusion section)")
    args = ap.parse_args(argv)

    from app.registry import load
    from common.synthetic_scene import render_ir, render_vis
    from stages.fusion import FusionStage, cuda_available, resolve_auto
    from stages.registration import RegistrationStage
    from stages.sinks.recorder import RecorderSink

    gc = load(args.config)
    fcfg, choice = resolve_auto(gc.config("fusion"), cuda_available())
    t = 1.0
    vis_img, ir_img = render_vis(t), render_ir(t)
    vis_pkt = Packet("demo", "frame", 0, t, 1e9, pts=t, buffers={"vis": vis_img}, meta={"modality": "vis"})
    ir_pkt = Packet("demo", "frame", 0, t + 0.002, 1e9, pts=t, buffers={"ir": ir_img}, meta={"modality": "ir"})

    reg = RegistrationStage(gc.config("registration"))
    reg.start()

    def register_one() -> Packet:
        # A fresh pair of the same frames: pairing + warp + the pair packet, as the stage runs it.
        reg._vis.clear(), reg._ir.clear()
        reg._vis.append(vis_pkt)
        reg._ir.append(ir_pkt)
        return reg._match(final=True)[0]

    pair = register_one()
    fusion = FusionStage(fcfg)
    fusion.start()
    fuser = fusion.fuser_for(pair.buffers["ir"].shape[1], pair.buffers["ir"].shape[0]) if fcfg.fuser == "lmfusion" else None
    [fused] = fusion.process(pair)

    rows: list[tuple[str, str, float]] = []
    n = args.iters
    rows.append(("capture (camera)", "render VIS 640x480 x2 (20 fps per 10 fps pair)", 2 * cpu_ms(lambda: render_vis(t), n // 4 or 1)))
    rows.append(("capture (camera)", "render IR 320x256", cpu_ms(lambda: render_ir(t), n // 4 or 1)))
    rows.append(("hop", "VIS frame -> registration (codec) x2", 2 * cpu_ms(lambda: hop(vis_pkt), n)))
    rows.append(("hop", "IR frame -> registration (codec)", cpu_ms(lambda: hop(ir_pkt), n)))
    rows.append(("registration", "pairing + VIS->IR warp", cpu_ms(register_one, n)))
    rows.append(("hop", "pair -> fusion (codec)", cpu_ms(lambda: hop(pair), n)))
    model_ms = None
    if fuser is not None:
        # One real fusion-stage call per sample, split by timing each nested call inside it: the
        # network's own engine (inner), the reduced-resolution wrapper around it, the Fuser
        # around the engine (colour, padding, dehazing), the smoke model (the mapping network, part
        # of the model), the stage.
        eng = fuser.engine
        inner = getattr(eng, "inner", eng)
        spent = {"inner": 0.0, "engine": 0.0, "fuser": 0.0, "smoke": 0.0}

        def timed(obj, method: str, key: str) -> None:
            orig = getattr(obj, method)

            def wrapper(*a, **k):
                t0 = time.process_time()
                try:
                    return orig(*a, **k)
                finally:
                    spent[key] += time.process_time() - t0
            setattr(obj, method, wrapper)          # the instance attribute shadows the method
        timed(inner, "fuse", "inner")
        if inner is not eng:
            timed(eng, "fuse", "engine")
        timed(fuser, "fuse_batch", "fuser")
        if fuser.smoke is not None:
            timed(fuser.smoke, "forward", "smoke")  # nn.Module.__call__ calls the instance's forward
        parts: dict[str, list[float]] = {"inner": [], "smoke": [], "wrap": [], "fuser": [], "stage": [], "total": []}
        for i in range(n + 2):
            for k in spent:
                spent[k] = 0.0
            t0 = time.process_time()
            fusion.process(pair)
            total = time.process_time() - t0
            if i < 2:
                continue                           # warm-up
            eng_s = spent["engine"] if inner is not eng else spent["inner"]
            parts["inner"].append(spent["inner"])
            parts["wrap"].append(eng_s - spent["inner"])
            parts["smoke"].append(spent["smoke"])
            parts["fuser"].append(spent["fuser"] - eng_s - spent["smoke"])
            parts["stage"].append(total - spent["fuser"])
            parts["total"].append(total)
        med = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
        model_ms = med["inner"] + med["smoke"]
        f = getattr(eng, "factor", 1)
        h, w = pair.buffers["ir"].shape[:2]
        rows.append(("fusion", f"model: encoder, fusion, decoder ({inner.name}, network at {w // f}x{h // f})", med["inner"]))
        if fuser.smoke is not None:
            rows.append(("fusion", f"model: smoke model (mapping network, torch, {w}x{h})", med["smoke"]))
        if inner is not eng:
            rows.append(("fusion", f"reduced resolution: down, detail, up ({eng.name})", med["wrap"]))
        rows.append(("fusion", "Fuser around the engine: colour, padding, dehazing, uint8", med["fuser"]))
        rows.append(("fusion", "stage: batching, packet", med["stage"]))
        rows.append(("fusion", "(the whole fusion stage call, for reference)", med["total"]))
    else:
        rows.append(("fusion", f"{fcfg.fuser} (classical, no model)", cpu_ms(lambda: fusion.process(pair), n)))
    rows.append(("hop", "fused -> recorder (codec)", cpu_ms(lambda: hop(fused), n)))
    rows.append(("hop", "fused -> detector feed (encode only: PUB)", cpu_ms(lambda: encode(fused), n)))
    with tempfile.TemporaryDirectory() as tmp:
        rec_cfg = dataclasses.replace(gc.config("recorder"), out_dir=tmp)
        rec = RecorderSink(rec_cfg)
        rec.start()
        seq = iter(range(10 ** 6))

        def record() -> None:
            i = next(seq)
            rec.process(Packet("demo", "fused", i, t + 0.1 * i, 1e9, pts=0.1 * i, buffers=fused.buffers, meta={}))
        rows.append(("recorder", f"H.264 encode {fused.buffers['fused'].shape[1]}x{fused.buffers['fused'].shape[0]} "
                                 f"({rec_cfg.preset})", cpu_ms(record, n)))
        rec.stop()

    pipeline_ms = sum(ms for stage, step, ms in rows if not stage.startswith("capture") and not step.startswith("("))
    print(f"bench_pipeline: {choice if fcfg.fuser == 'lmfusion' else fcfg.fuser}; {n} calls per step, median process CPU ms")
    print("| stage | step | CPU ms per fused pair |")
    print("|---|---|---:|")
    for stage, step, ms in rows:
        print(f"| {stage} | {step} | {ms:.2f} |")
    if model_ms is not None:
        over = pipeline_ms - model_ms
        print(f"| **pipeline** | every step but the cameras and the reference row | {pipeline_ms:.2f} |")
        print(f"\nmodel alone {model_ms:.2f} ms; pipeline beyond the model {over:.2f} ms = "
              f"{100 * over / model_ms:.1f} % overhead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
