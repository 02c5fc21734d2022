#!/usr/bin/env python3
"""Subscribe to the detector feed and print the hot spots of every fused frame.

    python run_stream.py &                                        # the demo publishes on tcp://127.0.0.1:5560
    python examples/hotspot_subscriber.py                         # print boxes until Ctrl-C
    python examples/hotspot_subscriber.py --endpoint sub+connect:tcp://10.0.0.7:5560 --count 100 --image fused

A hot spot is a connected blob of IR pixels much warmer than the frame (mean + k * std, and at
least --min-level), at least --min-area px. Boxes are in the fused frame's pixel coordinates
(IR geometry). Message format: docs/streaming.md ("Detector feed").

With a radiometric IR camera (capture_ir.radiometric, e.g. configs/demo_radiometric.yaml) the
packets carry the counts (buffer "ir_counts"), the camera's counts -> temperature map
(meta.ir_radiometric) and meta.ir_temperature_c; a hot spot is then a blob hotter than --min-c °C
and each box is printed with its peak temperature, e.g.
    demo #41 ... ir 3.1..400.0 °C p99 76.9 °C hottest (247.6,159.1) 400.0 °C | [241,148,14,18 400.0°C] [70,201,9,5 80.0°C]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.codec import CodecError, decode  # noqa: E402
from pipeline.transport import parse_endpoint  # noqa: E402


def hot_spots(gray: np.ndarray, k: float = 2.5, min_level: int = 150, min_area: int = 12) -> list[tuple]:
    """Blobs of `gray` (HxW uint8) warmer than max(mean + k*std, min_level).

    Returns [(x, y, w, h, peak), ...] sorted by peak, hottest first.
    """
    level = max(float(gray.mean() + k * gray.std()), float(min_level))
    mask = (gray > level).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= min_area:
            boxes.append((x, y, w, h, int(gray[labels == i].max())))
    return sorted(boxes, key=lambda b: -b[4])


def hot_spots_c(temp_c: np.ndarray, min_c: float, min_area: int) -> list[tuple]:
    """Blobs of `temp_c` (HxW float °C) hotter than min_c: [(x, y, w, h, peak °C), ...], hottest first."""
    mask = (temp_c > min_c).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = [(*(int(v) for v in stats[i][:4]), float(temp_c[labels == i].max()))
             for i in range(1, n) if stats[i][4] >= min_area]
    return sorted(boxes, key=lambda b: -b[4])


def temperature_line(pkt, min_c: float, min_area: int) -> str | None:
    """The °C part of a line for a radiometric packet; None when the packet carries no temperatures."""
    t = pkt.meta.get("ir_temperature_c")
    rc = pkt.meta.get("ir_radiometric")
    if not t or not rc or "ir_counts" not in pkt.buffers:
        return None
    from thermal.radiometry import RadiometricConfig, counts_to_celsius
    temp = counts_to_celsius(pkt.buffers["ir_counts"], RadiometricConfig(**rc))
    boxes = hot_spots_c(temp, min_c, min_area)
    hot = t["hottest"]
    frozen = " FROZEN (FFC)" if pkt.meta.get("ir_frozen") else ""
    shown = " ".join(f"[{x},{y},{w},{h} {c:.1f}°C]" for x, y, w, h, c in boxes[:8])
    return (f"ir {t['min']:.1f}..{t['max']:.1f} °C p99 {t['p99']:.1f} °C hottest ({hot['x']},{hot['y']}) "
            f"{hot['c']:.1f} °C{frozen} | {len(boxes)} above {min_c:g} °C: {shown}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="sub+connect:tcp://127.0.0.1:5560", help="the detector feed")
    ap.add_argument("--image", choices=("ir", "fused"), default="ir", help="which buffer to search")
    ap.add_argument("--count", type=int, default=0, help="stop after N frames (0 = until Ctrl-C)")
    ap.add_argument("--timeout", type=float, default=10.0, help="give up if no frame arrives for this long, s")
    ap.add_argument("--k", type=float, default=2.5, help="threshold: mean + k * std")
    ap.add_argument("--min-level", type=int, default=150, help="threshold floor, 0..255")
    ap.add_argument("--min-area", type=int, default=12, help="smallest blob, px")
    ap.add_argument("--min-c", type=float, default=40.0, help="radiometric IR: a hot spot is hotter than this, °C")
    args = ap.parse_args(argv)

    ep = parse_endpoint(args.endpoint)
    if ep.socket != "sub":
        ap.error(f"--endpoint {args.endpoint!r}: expected a sub+connect:... endpoint")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 4)           # a slow subscriber sees the newest frames, not a backlog
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    (sock.bind if ep.bind else sock.connect)(ep.address)
    seen, bad, last = 0, 0, time.monotonic()
    try:
        while args.count == 0 or seen < args.count:
            if not sock.poll(200):
                if time.monotonic() - last > args.timeout:
                    print(f"no frame from {args.endpoint} for {args.timeout:g}s", file=sys.stderr)
                    return 1
                continue
            try:
                pkt = decode(sock.recv_multipart(copy=False))
            except CodecError as e:
                bad += 1
                print(f"skipped a bad message: {e}", file=sys.stderr)
                continue
            last = time.monotonic()
            if pkt.is_eos:
                print(f"end of stream ({pkt.stream})")
                break
            line = temperature_line(pkt, args.min_c, args.min_area) if args.image == "ir" else None
            if line is not None:
                print(f"{pkt.stream} #{pkt.seq} fuser={pkt.meta.get('fuser')} {line}", flush=True)
                seen += 1
                continue
            img = pkt.buffers[args.image]
            gray = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
            boxes = hot_spots(gray, args.k, args.min_level, args.min_area)
            age_ms = (time.time() - pkt.t_wall) * 1000.0
            shown = " ".join(f"[{x},{y},{w},{h} peak {p}]" for x, y, w, h, p in boxes[:8])
            print(f"{pkt.stream} #{pkt.seq} fuser={pkt.meta.get('fuser')} {gray.shape[1]}x{gray.shape[0]} "
                  f"age {age_ms:.0f}ms skew {pkt.meta.get('skew_ms', 0):+.1f}ms hotspots {len(boxes)}: {shown}",
                  flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
