"""Registration stage: pair VIS and IR frames by capture time, warp VIS into IR geometry.

Inputs: frame packets of both modalities, each stream in capture order (they may interleave
arbitrarily). Output: pair packets
    buffers {"vis": HxWx3 uint8 BGR (or HxW gray), "ir": HxW uint8}, H, W = output size
    meta {"skew_ms": t_vis - t_ir in ms, "vis_seq", "ir_seq", "calibration_id", ...}
with the IR frame's clocks (IR is the geometry and time reference: t_mono, t_wall, pts).

Pairing: IR is the reference stream. Each IR frame takes the VIS frame nearest in capture time
(`t_mono`) within `tolerance_ms`; each VIS frame is used at most once. A decision waits until a
VIS frame at or after the IR time has arrived, or until the next VIS frame (at least 0.75 of
the recent VIS interval after the last one) could not be nearer, or until end-of-stream. Frames that find no partner are counted per modality (`unmatched_vis`,
`unmatched_ir`) and reported by `stats()`; nothing is dropped silently. With the demo's
20 fps VIS and 10 fps IR about half the VIS frames have no IR partner by design.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.packet import Packet

log = logging.getLogger(__name__)


class RegistrationError(RuntimeError):
    """Frames cannot be registered (calibration missing/mismatched, bad frame); one line."""


@dataclass
class RegistrationConfig:
    calibration: str = "configs/calibration/demo.yaml"  # ir_from_vis calibration YAML (path)
    tolerance_ms: float = 35.0       # max |t_vis - t_ir| for a pair, milliseconds
    max_pending: int = 32            # frames held per modality waiting for a partner (count)
    output_size: list[int] | None = None  # [w, h] px of the pair sent to fusion; null = IR size
    crop: list[int] | None = None    # [x, y, w, h] px in IR geometry, applied before resizing
    stream: str = ""                 # name of the pair stream; empty = the IR frame's stream

    def __post_init__(self) -> None:
        if not self.tolerance_ms > 0:
            raise ValueError(f"tolerance_ms: must be > 0 ms, got {self.tolerance_ms}")
        if self.max_pending < 1:
            raise ValueError(f"max_pending: must be >= 1, got {self.max_pending}")
        if self.output_size is not None and (len(self.output_size) != 2 or min(self.output_size) < 8):
            raise ValueError(f"output_size: must be [width, height] with both >= 8 px, got {self.output_size}")
        if self.crop is not None and (len(self.crop) != 4 or min(self.crop[2:]) < 8 or min(self.crop[:2]) < 0):
            raise ValueError(f"crop: must be [x, y, w, h] px with x, y >= 0 and w, h >= 8, got {self.crop}")


class _LocalCalibration:
    """The subset of `calibration.Calibration` this stage needs, read from the shared YAML
    format. Used only when the `calibration` package is not importable."""

    def __init__(self, path: str):
        import hashlib
        import yaml
        try:
            d = yaml.safe_load(Path(path).read_text())
            if d.get("version") != 1 or d.get("direction") != "ir_from_vis":
                raise ValueError("expected version: 1 and direction: ir_from_vis")
            self.ir_from_vis = np.asarray(d["ir_from_vis"], dtype=np.float64).reshape(3, 3)
            self.vis_size = tuple(int(v) for v in d["vis_size"])
            self.ir_size = tuple(int(v) for v in d["ir_size"])
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise RegistrationError(f"calibration {path}: unreadable ({e})") from None
        key = np.round(self.ir_from_vis, 9).tobytes() + repr((self.vis_size, self.ir_size)).encode()
        self.id = hashlib.sha1(key).hexdigest()[:12]

    def check_sizes(self, vis_size, ir_size) -> None:
        if tuple(vis_size) != self.vis_size or tuple(ir_size) != self.ir_size:
            raise RegistrationError(f"calibration is for vis {list(self.vis_size)} / ir {list(self.ir_size)} px "
                                    f"but frames are vis {list(vis_size)} / ir {list(ir_size)}")

    def warp(self, vis: np.ndarray) -> np.ndarray:
        return cv2.warpPerspective(vis, self.ir_from_vis, self.ir_size, flags=cv2.INTER_LINEAR)


def load_calibration(path: str):
    """The Calibration at `path`, via the calibration package when it exists."""
    if not Path(path).is_file():
        raise RegistrationError(f"registration.calibration: file {path} not found (expected an ir_from_vis calibration YAML)")
    try:
        import calibration
        loader = calibration.load
    except (ImportError, AttributeError):
        return _LocalCalibration(path)
    try:
        return loader(path)
    except calibration.CalibrationError as e:
        raise RegistrationError(f"calibration {path}: {e}") from None


class RegistrationStage:
    """Pairs VIS+IR frames by time and warps VIS into IR geometry. See the module docstring."""

    def __init__(self, config: RegistrationConfig):
        self.config = config
        self._cal = None
        self._vis: collections.deque[Packet] = collections.deque()
        self._ir: collections.deque[Packet] = collections.deque()
        self._sizes_checked = {"vis": None, "ir": None}
        self._seq = 0
        self.counts = {"pairs": 0, "vis_in": 0, "ir_in": 0, "unmatched_vis": 0, "unmatched_ir": 0}
        self._skews: list[float] = []
        self._vis_gaps: collections.deque[float] = collections.deque(maxlen=15)
        self._last_vis_t: float | None = None

    def start(self) -> None:
        self._cal = load_calibration(self.config.calibration)

    def stop(self) -> None:
        # Frames still waiting at stop() can never be paired: count them, never lose them silently.
        self.counts["unmatched_vis"] += len(self._vis)
        self.counts["unmatched_ir"] += len(self._ir)
        self._vis.clear()
        self._ir.clear()

    # -- bookkeeping --------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters for the runner's status line and summary (JSON-able)."""
        sk = np.abs(np.asarray(self._skews[-1000:], dtype=np.float64))
        return {**self.counts,
                "pending_vis": len(self._vis), "pending_ir": len(self._ir),
                "skew_ms_mean_abs": round(float(sk.mean()), 2) if sk.size else None,
                "skew_ms_max_abs": round(float(sk.max()), 2) if sk.size else None}

    def _check_frame(self, pkt: Packet) -> str:
        modality = pkt.meta.get("modality")
        if modality not in ("vis", "ir") or modality not in pkt.buffers:
            raise RegistrationError(f"frame packet {pkt.stream}#{pkt.seq}: expected meta.modality 'vis' or 'ir' "
                                    f"with a matching buffer, got modality={modality!r} buffers={list(pkt.buffers)}")
        img = pkt.buffers[modality]
        size = (img.shape[1], img.shape[0])
        if self._sizes_checked[modality] != size:
            other = "ir" if modality == "vis" else "vis"
            sizes = {modality: size, other: self._sizes_checked[other] or
                     (self._cal.ir_size if other == "ir" else self._cal.vis_size)}
            self._cal.check_sizes(sizes["vis"], sizes["ir"])
            self._sizes_checked[modality] = size
        return modality

    # -- the work -----------------------------------------------------------------------------
    def process(self, packet: Packet) -> list[Packet] | None:
        """Frame packet in; zero or more pair packets out. EOS flushes and is forwarded."""
        if packet.is_eos:
            out = self._match(final=True)
            self.stop()
            return [*out, Packet.eos(self.config.stream or packet.stream, seq=self._seq, **packet.meta)]
        if packet.kind != "frame":
            raise RegistrationError(f"registration expects frame packets, got kind {packet.kind!r}")
        modality = self._check_frame(packet)
        queue = self._vis if modality == "vis" else self._ir
        self.counts[f"{modality}_in"] += 1
        if modality == "vis":
            if self._last_vis_t is not None and packet.t_mono > self._last_vis_t:
                self._vis_gaps.append(packet.t_mono - self._last_vis_t)
            self._last_vis_t = packet.t_mono
        queue.append(packet)
        if len(queue) > self.config.max_pending:
            # The partner stream stalled: bound memory, count what we give up.
            queue.popleft()
            self.counts[f"unmatched_{modality}"] += 1
        return self._match(final=False) or None

    def _min_vis_period(self) -> float | None:
        """A safe lower bound of the VIS frame interval (s): 0.75 x the median recent gap.

        Dropped frames only make gaps longer, and jitter is far below a quarter period."""
        if len(self._vis_gaps) < 3:
            return None
        return 0.75 * float(np.median(self._vis_gaps))

    def _match(self, final: bool) -> list[Packet]:
        tol = self.config.tolerance_ms / 1000.0
        out = []
        while self._ir and self._vis:
            ir = self._ir[0]
            # VIS frames too old for this IR frame are too old for every later one too.
            while self._vis and self._vis[0].t_mono < ir.t_mono - tol:
                self._vis.popleft()
                self.counts["unmatched_vis"] += 1
            if not self._vis:
                break
            if self._vis[0].t_mono > ir.t_mono + tol:
                # The nearest VIS frame is already too late: this IR frame has no partner.
                self._ir.popleft()
                self.counts["unmatched_ir"] += 1
                continue
            candidates = [v for v in self._vis if abs(v.t_mono - ir.t_mono) <= tol]
            best = min(candidates, key=lambda v: abs(v.t_mono - ir.t_mono))
            last = self._vis[-1].t_mono
            if last < ir.t_mono and not final:
                # A later VIS frame may be nearer. It cannot come before last + min_period, so when
                # even that is farther than `best`, decide now instead of waiting a frame (latency).
                period = self._min_vis_period()
                if period is None or last + period - ir.t_mono < abs(best.t_mono - ir.t_mono):
                    break
            while self._vis[0] is not best:
                self._vis.popleft()
                self.counts["unmatched_vis"] += 1
            self._vis.popleft()
            self._ir.popleft()
            out.append(self._pair(best, ir))
        if final:
            # Nothing more will arrive: whatever is left has no partner.
            self.counts["unmatched_vis"] += len(self._vis)
            self.counts["unmatched_ir"] += len(self._ir)
            self._vis.clear()
            self._ir.clear()
        return out

    def _pair(self, vis: Packet, ir: Packet) -> Packet:
        vis_img = self._cal.warp(vis.buffers["vis"])   # IR size, VIS channels
        ir_img = ir.buffers["ir"]
        if self.config.crop is not None:
            x, y, w, h = self.config.crop
            vis_img, ir_img = vis_img[y:y + h, x:x + w], ir_img[y:y + h, x:x + w]
        if self.config.output_size is not None:
            size = tuple(self.config.output_size)
            if (ir_img.shape[1], ir_img.shape[0]) != size:
                vis_img = cv2.resize(vis_img, size, interpolation=cv2.INTER_AREA)
                ir_img = cv2.resize(ir_img, size, interpolation=cv2.INTER_AREA)
        skew_ms = (vis.t_mono - ir.t_mono) * 1000.0
        self._skews.append(skew_ms)
        if len(self._skews) > 2000:
            del self._skews[:1000]
        self.counts["pairs"] += 1
        pkt = Packet(stream=self.config.stream or ir.stream, kind="pair", seq=self._seq,
                     t_mono=ir.t_mono, t_wall=ir.t_wall, pts=ir.pts,
                     buffers={"vis": np.ascontiguousarray(vis_img), "ir": np.ascontiguousarray(ir_img)},
                     meta={"skew_ms": round(skew_ms, 3), "vis_seq": vis.seq, "ir_seq": ir.seq,
                           "calibration_id": self._cal.id, "vis_t_mono": vis.t_mono,
                           "vis_pts": vis.pts, "ir_pts": ir.pts,
                           "vis_source": vis.meta.get("source", ""), "ir_source": ir.meta.get("source", ""),
                           "clock": ir.meta.get("clock", "capture")})
        self._seq += 1
        return pkt
