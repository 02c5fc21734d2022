"""Registration stage: pair VIS and IR frames by capture time, warp VIS into IR geometry.

Inputs: frame packets of both modalities, each stream in capture order (they may interleave
arbitrarily). Output: pair packets
    buffers {"vis": HxWx3 uint8 BGR (or HxW gray), "ir": HxW uint8}, H, W = output size
    meta {"skew_ms": t_vis - t_ir in ms, "vis_seq", "ir_seq", "calibration_id", ...}
with the IR frame's clocks (IR is the geometry and time reference: t_mono, t_wall, pts).

16-bit IR (counts): each IR frame goes through thermal.camera.IrFrames on arrival: FFC freeze
check (`ffc_detect`, `ffc_hold_ms`: a frozen frame is paired with meta.ir_frozen for at most
ffc_hold_ms, then dropped and counted in `ir_frozen_dropped`, not in `ir_in`), the AGC named by the
camera's `capture_ir.agc` (the 8-bit picture becomes buffer "ir"), the counts kept as buffer
"ir_counts" and cut/scaled with the picture; pairs of a radiometric camera carry
meta.ir_temperature_c (docs/thermal.md).

Pairing: IR is the reference stream. Each IR frame takes the VIS frame nearest in capture time
(`t_mono`) within `tolerance_ms`; each VIS frame is used at most once. A decision waits until a
VIS frame at or after the IR time has arrived, or until the next VIS frame (at least 0.75 of
the recent VIS interval after the last one) could not be nearer, or until end-of-stream. Frames that find no partner are counted per modality (`unmatched_vis`,
`unmatched_ir`) and reported by `stats()`; nothing is dropped silently. With the demo's
20 fps VIS and 10 fps IR about half the VIS frames have no IR partner by design.

Online refinement (`online_refine.enabled`, off by default): every `every_s` seconds of capture
time the raw pair (VIS before the warp, IR) goes to `calibration.online.OnlineRefiner`, which
re-estimates the geometry from the current one and adopts the result only when the VIS frame
has structure (smoke gate) and the alignment score gains `margin`. An adoption is logged in one
line (old -> new calibration id, scores, corner move, the pair) and later pairs carry the new
`calibration_id`. stats() counts attempts, adoptions and rejections by reason.

Start without a calibration (`calibration: auto`, what an empty `calibration` means for any
source but the synthetic one): pairs are formed but nothing is sent on until a calibration
exists. Raw pairs whose VIS frame passes the structure gate go, one at a time, to
`calibration.estimate(method="auto")` and its stability self-check (calibration.auto.stability);
the first estimate that moves by at most 2 px is taken, logged with its self-check, written to
`calibration_out` (beside the recording) and refined online from then on (online_refine.enabled:
auto). Meanwhile stats()["waiting"] says so on the status line. No estimate passing within
`calibration_timeout_s` of capture time is a one-line error saying how to make one by hand (the
last raw pair is saved beside the recording for that).
"""
from __future__ import annotations

import collections
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

import calibration
from calibration import CalibrationError, estimate
from calibration.auto import STABLE_PX, stability
from calibration.online import OnlineRefiner, OnlineRefinerConfig
from calibration.score import structure
from pipeline.packet import Packet
from thermal.camera import IrFrames

log = logging.getLogger(__name__)


class RegistrationError(RuntimeError):
    """Frames cannot be registered (calibration missing/mismatched, bad frame); one line."""


@dataclass
class OnlineRefineConfig:
    """Section `registration.online_refine`: re-estimate the geometry from live pairs now and
    then and adopt a better one (calibration/online.py; docs/calibration.md)."""

    enabled: bool | Literal["auto"] = "auto"  # auto: on when the calibration is estimated at start,
                                     # off with a calibration file; false: the geometry never changes
    every_s: float = 10.0            # capture-time seconds between re-estimates (the first at the first pair)
    margin: float = 0.02             # alignment-score gain (gradient correlation, in [-1, 1]) needed to adopt
    min_gradient_energy: float = 1.25  # smoke gate: VIS mean |gradient| (gray levels/px) below this is not used
    min_contrast: float = 10.0       # smoke gate: VIS gray-level std (after a 2 px blur) below this is not used
    max_shift_px: float = 40.0       # IR px: a larger mean corner move is a wrong match, never adopted
    background: bool = True          # true: estimate on a worker thread, pairs never wait for it;
                                     # false: inline (reproducible; one pair per every_s waits ~0.1-1 s)

    def __post_init__(self) -> None:
        if not self.every_s > 0:
            raise ValueError(f"every_s: must be > 0 seconds, got {self.every_s}")
        if not self.max_shift_px > 0:
            raise ValueError(f"max_shift_px: must be > 0 px, got {self.max_shift_px}")
        for key in ("margin", "min_gradient_energy", "min_contrast"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")


REPO = Path(__file__).resolve().parents[1]
DEMO_CALIBRATION = REPO / "configs" / "calibration" / "demo.yaml"   # the synthetic source's geometry
ESTIMATE = "auto"                  # `calibration` value: estimate one from the first pairs with structure
CALIBRATION_FILE = "calibration.yaml"   # an estimated calibration's name beside the recording


@dataclass
class RegistrationConfig:
    calibration: str = ""            # ir_from_vis calibration YAML (path); "auto" = estimate one at start;
                                     # "" = the demo calibration for the synthetic source, else auto
    calibration_timeout_s: float = 30.0   # auto: capture-time seconds to find a stable estimate, then an error
    calibration_out: str = ""        # auto: where the estimate is written; "" = not written (the runner
                                     # sets it to calibration.yaml beside the recording)
    tolerance_ms: float = 35.0       # max |t_vis - t_ir| for a pair, milliseconds
    max_pending: int = 32            # frames held per modality waiting for a partner (count)
    output_size: list[int] | None = None  # [w, h] px of the pair sent to fusion; null = IR size
    crop: list[int] | None = None    # [x, y, w, h] px in IR geometry, applied before resizing
    stream: str = ""                 # name of the pair stream; empty = the IR frame's stream
    online_refine: OnlineRefineConfig = field(default_factory=OnlineRefineConfig)  # see OnlineRefineConfig
    ffc_detect: bool | Literal["auto"] = "auto"   # FFC freezes of the IR camera (thermal/ffc.py); auto: on for 16-bit IR
    ffc_hold_ms: float = 500.0       # a frozen IR frame is paired (meta.ir_frozen: true) for at most this
                                     # long after the last fresh one, then dropped and counted, ms

    def __post_init__(self) -> None:
        if not self.tolerance_ms > 0:
            raise ValueError(f"tolerance_ms: must be > 0 ms, got {self.tolerance_ms}")
        if not self.calibration_timeout_s > 0:
            raise ValueError(f"calibration_timeout_s: must be > 0 seconds, got {self.calibration_timeout_s}")
        if self.max_pending < 1:
            raise ValueError(f"max_pending: must be >= 1, got {self.max_pending}")
        if self.ffc_hold_ms < 0:
            raise ValueError(f"ffc_hold_ms: must be >= 0 ms, got {self.ffc_hold_ms}")
        if self.output_size is not None and (len(self.output_size) != 2 or min(self.output_size) < 8):
            raise ValueError(f"output_size: must be [width, height] with both >= 8 px, got {self.output_size}")
        if self.crop is not None and (len(self.crop) != 4 or min(self.crop[2:]) < 8 or min(self.crop[:2]) < 0):
            raise ValueError(f"crop: must be [x, y, w, h] px with x, y >= 0 and w, h >= 8, got {self.crop}")


def resolve_calibration(cfg: RegistrationConfig, source_kinds: tuple[str, str], out_dir: str) -> RegistrationConfig:
    """The section with `calibration` decided for these sources ('synthetic', 'rtsp', 'file',
    'folder' for VIS and IR): "" means the demo calibration when both are synthetic, else an
    estimate at start, written to `out_dir`/calibration.yaml unless calibration_out is set."""
    import dataclasses
    cal = cfg.calibration
    if cal == "":
        cal = str(DEMO_CALIBRATION) if source_kinds == ("synthetic", "synthetic") else ESTIMATE
    out = cfg.calibration_out
    if cal == ESTIMATE and not out:
        out = str(Path(out_dir) / CALIBRATION_FILE)
    return dataclasses.replace(cfg, calibration=cal, calibration_out=out)


class _RefineWorker:
    """One daemon thread that runs `OnlineRefiner.update()` on the pair it is handed.

    Why a thread: an estimate costs 0.1-1 s of CPU (IR 320x256 .. 768x576), 1-10 frame periods
    at the IR camera's 10 fps. Inline, one pair per `every_s` would wait that long and a live
    edge would drop the frames queued behind it. Here the frame path only copies the pair
    (~1 ms) and hands it over; while an estimate is running no new pair is taken (the caller
    skips that period), so refinement never costs more than one core-second per `every_s`
    (about 1-5 % of a core at the default 10 s). OpenCV's warps and ECC release the GIL, so
    the frame path keeps running beside it (measured in tests/stages/test_registration_online.py).
    """

    def __init__(self, refiner, done) -> None:
        self._refiner, self._done = refiner, done
        self._cond = threading.Condition()
        self._job: tuple | None = None   # (vis, ir, where) waiting for the thread
        self._busy = False
        self._closed = False
        self.error: BaseException | None = None   # what killed the thread; the frame path raises it
        self._thread = threading.Thread(target=self._run, name="online-refine", daemon=True)
        self._thread.start()

    def submit(self, vis: np.ndarray, ir: np.ndarray, where: str) -> bool:
        """Hand over one pair (copied by the caller); False while an estimate is still running."""
        with self._cond:
            if self._busy or self._job is not None or self._closed:
                return False
            self._job = (vis, ir, where)
            self._cond.notify_all()
            return True

    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._job is None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._job, self._busy = self._job, None, True
            try:
                self._done(self._refiner.update(*job))
            except BaseException as e:  # noqa: BLE001 - reported on the frame path, fatal there
                self.error = e
                return
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking pairs; wait up to timeout_s for a running estimate (it is a daemon)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)


@dataclass
class _Estimate:
    """What one start-up estimate gave. moves_px: the stability self-check (IR px, one per side)."""
    calibration: object | None       # calibration.Calibration, or None when there is no answer
    reason: str                      # "stable" | "unstable" | "structureless" | "no-estimate"
    where: str                       # which pair it came from
    moves_px: list[float] = field(default_factory=list)

    @property
    def worst_px(self) -> float:
        return max(self.moves_px) if self.moves_px else math.inf


class _StartupEstimator:
    """One raw pair -> _Estimate: structure gate, calibration.estimate(method="auto"), then its
    stability self-check (4 re-estimates with an edge of the VIS frame left out). Pure: no state."""

    def __init__(self, gate: OnlineRefineConfig):
        self.gate = gate

    def update(self, vis: np.ndarray, ir: np.ndarray, where: str) -> _Estimate:
        energy, contrast = structure(vis)
        if energy < self.gate.min_gradient_energy or contrast < self.gate.min_contrast:
            return _Estimate(None, "structureless", where)
        try:
            cal = estimate(vis, ir, method="auto")
        except CalibrationError:
            return _Estimate(None, "no-estimate", where)
        moves = stability(vis, ir, cal)
        return _Estimate(cal, "stable" if max(moves) <= STABLE_PX else "unstable", where, moves)


def load_calibration(path: str):
    """The calibration.Calibration at `path` (one reader, so one file has one calibration_id)."""
    if not Path(path).is_file():
        raise RegistrationError(f"registration.calibration: file {path} not found (expected an ir_from_vis calibration YAML)")
    try:
        return calibration.load(path)
    except calibration.CalibrationError as e:
        raise RegistrationError(f"calibration {path}: {e}") from None


class RegistrationStage:
    """Pairs VIS+IR frames by time and warps VIS into IR geometry. See the module docstring."""
    Config = RegistrationConfig
    inputs = ("vis", "ir")           # one socket per camera, so lossless runs merge them in time order
    outputs = ("pairs",)
    batched = False

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
        self._refiner = None          # calibration.online.OnlineRefiner when online_refine.enabled
        self._refine_worker: _RefineWorker | None = None
        self._refine_t: float | None = None   # capture time (s) of the last pair offered for refinement
        self._refine_lock = threading.Lock()
        self.refine_counts = {"attempts": 0, "adopted": 0, "rejected": 0, "busy_skips": 0}
        self.refine_rejected_by: dict[str, int] = {}
        # calibration: auto (estimate at start); see the module docstring
        self._estimating = False
        self._estimator: _StartupEstimator | None = None
        self._estimate_worker: _RefineWorker | None = None
        self._estimates_done: list[_Estimate] = []        # finished on the worker, taken on the frame path
        self.estimate_counts = {"tries": 0, "structureless": 0, "no-estimate": 0, "unstable": 0}
        self._best_unstable: _Estimate | None = None
        self._running_estimate = ""                        # the pair on the estimator thread now ("" = none)
        self._first_t: float | None = None                 # capture time of the first frame (s)
        self._last_t: float | None = None                  # capture time of the latest frame (s)
        self._last_raw: tuple[np.ndarray, np.ndarray] | None = None   # latest raw pair (saved on timeout)
        self.calibrated_after_s: float | None = None       # capture seconds from the first frame to the estimate
        # 16-bit IR: FFC freezes, AGC to the 8-bit picture, temperatures (thermal/camera.py)
        self._ir_frames = IrFrames(config.ffc_detect, config.ffc_hold_ms)
        self._ir_counts_seen = False

    def start(self) -> None:
        rc = self.config.online_refine
        if self.config.calibration in ("", ESTIMATE):
            self._estimating = True
            self._estimator = _StartupEstimator(rc)
            if rc.background:
                self._estimate_worker = _RefineWorker(self._estimator, self._estimated)
            log.info("registration: no calibration named: estimating one from the first pairs with structure "
                     "(at most %g s); nothing is fused until then", self.config.calibration_timeout_s)
            return
        self._cal = load_calibration(self.config.calibration)
        if rc.enabled is True:
            self._start_refiner()

    def _start_refiner(self) -> None:
        rc = self.config.online_refine
        self._refiner = OnlineRefiner(OnlineRefinerConfig(
            margin=rc.margin, min_gradient_energy=rc.min_gradient_energy, min_contrast=rc.min_contrast,
            max_shift_px=rc.max_shift_px), self._cal)
        if rc.background:
            self._refine_worker = _RefineWorker(self._refiner, self._refined)

    def stop(self) -> None:
        if self._refine_worker is not None:
            self._refine_worker.close()
        if self._estimate_worker is not None:
            self._estimate_worker.close()
        # Frames still waiting at stop() can never be paired: count them, never lose them silently.
        self.counts["unmatched_vis"] += len(self._vis)
        self.counts["unmatched_ir"] += len(self._ir)
        self._vis.clear()
        self._ir.clear()

    # -- bookkeeping --------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters for the runner's status line and summary (JSON-able)."""
        sk = np.abs(np.asarray(self._skews[-1000:], dtype=np.float64))
        out = {**self.counts,
               "pending_vis": len(self._vis), "pending_ir": len(self._ir),
               "skew_ms_mean_abs": round(float(sk.mean()), 2) if sk.size else None,
               "skew_ms_max_abs": round(float(sk.max()), 2) if sk.size else None}
        if self._refiner is not None:
            with self._refine_lock:
                out.update({f"refine_{k}": v for k, v in self.refine_counts.items()})
                out["refine_rejected_by"] = dict(self.refine_rejected_by)
            out["calibration_id"] = self._cal.id
        if self._ir_counts_seen:
            out.update(self._ir_frames.stats())
        if self._estimating:
            out["estimates"] = dict(self.estimate_counts)
            out["calibrated_after_s"] = self.calibrated_after_s
            if self._cal is None:
                out["waiting"] = self._waiting()
        return out

    def _waiting(self) -> str:
        """The status line's words while no calibration exists yet."""
        if self._first_t is None:
            return "calibrating, nothing fused yet: waiting for frames"
        c = self.estimate_counts
        spent = (self._last_t or self._first_t) - self._first_t
        running = f", estimating on the {self._running_estimate}" if self._running_estimate else ""
        return (f"calibrating, nothing fused yet: {c['tries']} estimates ({c['structureless']} structureless, "
                f"{c['unstable']} failed the self-check){running}, {spent:.0f} of {self.config.calibration_timeout_s:g} s")

    # -- calibration: auto ----------------------------------------------------------------------
    def _estimated(self, res: _Estimate) -> None:
        """An estimate finished (any thread); the frame path takes it (_take_estimates)."""
        with self._refine_lock:
            self._estimates_done.append(res)

    def _offer_estimate(self, vis: Packet, ir: Packet) -> None:
        """Hand this raw pair to the estimator (inline, or its thread when that is idle)."""
        self._last_raw = (vis.buffers["vis"], ir.buffers["ir"])
        where = f"pair ir#{ir.seq} vis#{vis.seq} at t={ir.t_mono:.2f} s"
        worker = self._estimate_worker
        if worker is None:
            self._estimated(self._estimator.update(vis.buffers["vis"], ir.buffers["ir"], where))
        else:
            if worker.error is not None:
                e = worker.error
                raise RegistrationError(f"calibration estimate failed: {type(e).__name__}: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}")
            if worker.submit(vis.buffers["vis"].copy(), ir.buffers["ir"].copy(), where):
                self._running_estimate = where
        self._take_estimates()

    def _take_estimates(self) -> None:
        """Book finished estimates; adopt the first that passed its self-check."""
        with self._refine_lock:
            done, self._estimates_done = self._estimates_done, []
        for res in done:
            if res.where == self._running_estimate:
                self._running_estimate = ""
            if self._cal is not None:
                return
            c = self.estimate_counts
            c["tries"] += 1
            if res.reason != "stable":
                c[res.reason] += 1
            moves = "/".join(f"{m:.2f}" for m in res.moves_px)
            if res.reason == "unstable":
                if self._best_unstable is None or res.worst_px < self._best_unstable.worst_px:
                    self._best_unstable = res
                log.info("registration: estimate %s from %s failed the stability self-check (moves %s px, "
                         "limit 2 px); trying the next pair", res.calibration.id, res.where, moves)
            if res.reason == "stable":
                self._adopt_estimate(res, moves)

    def _adopt_estimate(self, res: _Estimate, moves: str) -> None:
        cal = self._cal = res.calibration
        self._sizes_checked = {"vis": tuple(cal.vis_size), "ir": tuple(cal.ir_size)}
        self.calibrated_after_s = round((self._last_t or 0.0) - (self._first_t or 0.0), 2)
        saved = ""
        if self.config.calibration_out:
            saved = f"; written to {cal.save(self.config.calibration_out)}"
        refine = self.config.online_refine.enabled in (True, "auto")
        log.info("registration: calibration %s estimated from %s, %.1f s after the first frame; stability "
                 "self-check passed (moves %s px, limit 2 px)%s; online refinement %s", cal.id, res.where,
                 self.calibrated_after_s, moves, saved, "on" if refine else "off")
        if self._estimate_worker is not None:
            self._estimate_worker.close(timeout_s=0.0)
        if refine:
            self._refine_t = self._last_t     # the first re-estimate one every_s from now
            self._start_refiner()

    def _check_timeout(self) -> None:
        """No stable estimate within calibration_timeout_s of capture time: a one-line error."""
        if self._cal is not None or self._first_t is None:
            return
        timeout = self.config.calibration_timeout_s
        if self._last_t - self._first_t <= timeout:
            return
        c = self.estimate_counts
        best = ""
        if self._best_unstable is not None:
            best = f", the best moved {self._best_unstable.worst_px:.1f} px"
        vis_png, ir_png = "vis.png", "ir.png"
        if self._last_raw is not None and self.config.calibration_out:
            import cv2 as _cv2
            folder = Path(self.config.calibration_out).parent
            folder.mkdir(parents=True, exist_ok=True)
            vis_png, ir_png = str(folder / "calibration_vis.png"), str(folder / "calibration_ir.png")
            _cv2.imwrite(vis_png, self._last_raw[0])
            _cv2.imwrite(ir_png, self._last_raw[1])
        raise RegistrationError(
            f"registration.calibration: no calibration after {timeout:g} s of frames ({c['tries']} estimates: "
            f"{c['structureless']} structureless, {c['no-estimate']} without an answer, {c['unstable']} failed the "
            f"stability self-check{best}); make one by hand: python -m calibration auto --vis {vis_png} --ir {ir_png} "
            f"--out site.yaml --stability (or points/target, docs/calibration.md), then pass --calibration site.yaml")

    # -- online refinement ----------------------------------------------------------------------
    def _refined(self, res) -> None:
        """Book one OnlineRefiner decision; swap the geometry in on adoption (any thread)."""
        with self._refine_lock:
            self.refine_counts["attempts"] += 1
            if res.adopted:
                self.refine_counts["adopted"] += 1
            else:
                self.refine_counts["rejected"] += 1
                self.refine_rejected_by[res.reason] = self.refine_rejected_by.get(res.reason, 0) + 1
        if res.adopted:
            self._cal = res.calibration   # one reference swap: the frame path reads it once per pair
            if self._estimating and self.config.calibration_out:
                res.calibration.save(self.config.calibration_out)   # the file beside the recording stays current

    def _maybe_refine(self, vis: Packet, ir: Packet) -> None:
        """Every `every_s` of capture time, offer this raw pair to the refiner."""
        worker = self._refine_worker
        if worker is not None and worker.error is not None:
            e = worker.error
            raise RegistrationError(f"online refinement failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if self._refine_t is not None and ir.t_mono - self._refine_t < self.config.online_refine.every_s:
            return
        self._refine_t = ir.t_mono
        where = f"pair of ir#{ir.seq} vis#{vis.seq} at t={ir.t_mono:.2f} s"
        if worker is None:
            self._refined(self._refiner.update(vis.buffers["vis"], ir.buffers["ir"], where))
        elif not worker.submit(vis.buffers["vis"].copy(), ir.buffers["ir"].copy(), where):
            with self._refine_lock:
                self.refine_counts["busy_skips"] += 1   # still busy with the last one: skip a period

    def _check_frame(self, pkt: Packet) -> str:
        modality = pkt.meta.get("modality")
        if modality not in ("vis", "ir") or modality not in pkt.buffers:
            raise RegistrationError(f"frame packet {pkt.stream}#{pkt.seq}: expected meta.modality 'vis' or 'ir' "
                                    f"with a matching buffer, got modality={modality!r} buffers={list(pkt.buffers)}")
        img = pkt.buffers[modality]
        if modality == "ir" and (img.ndim != 2 or img.dtype not in (np.uint8, np.uint16)):
            raise RegistrationError(f"IR frame {pkt.stream}#{pkt.seq}: expected (H, W) uint8 or uint16 (counts), "
                                    f"got {img.dtype} {img.shape}")
        size = (img.shape[1], img.shape[0])
        if self._cal is not None and self._sizes_checked[modality] != size:
            other = "ir" if modality == "vis" else "vis"
            sizes = {modality: size, other: self._sizes_checked[other] or
                     (self._cal.ir_size if other == "ir" else self._cal.vis_size)}
            try:
                self._cal.check_sizes(sizes["vis"], sizes["ir"])
            except Exception as e:   # calibration.CalibrationError or RegistrationError: one line, naming the file
                where = (f"calibration estimated at start{' (' + self.config.calibration_out + ')' if self.config.calibration_out else ''}"
                         if self._estimating else f"registration.calibration {self.config.calibration}")
                raise RegistrationError(f"{where}: {str(e).splitlines()[0]}; fit one for these cameras "
                                        f"(python -m calibration auto ..., docs/calibration.md) or leave "
                                        f"registration.calibration empty to estimate one at start") from None
            self._sizes_checked[modality] = size
        return modality

    # -- the work -----------------------------------------------------------------------------
    def finish(self) -> list[Packet]:
        """End of stream: the pairs the frames still held can make."""
        return self._match(final=True)

    def process(self, packet: Packet) -> list[Packet]:
        """Frame packet in; zero or more pair packets out."""
        if packet.kind != "frame":
            raise RegistrationError(f"registration expects frame packets, got kind {packet.kind!r}")
        modality = self._check_frame(packet)
        if modality == "ir" and (packet.buffers["ir"].dtype == np.uint16 or "ir_camera" in packet.meta
                                 or self.config.ffc_detect is True):
            self._ir_counts_seen = True
            packet = self._ir_frames.frame(packet)
            if packet is None:              # frozen longer than ffc_hold_ms: counted, not paired
                return []
        if self._estimating:
            self._first_t = packet.t_mono if self._first_t is None else self._first_t
            self._last_t = packet.t_mono if self._last_t is None else max(self._last_t, packet.t_mono)
            if self._cal is None:
                self._take_estimates()
                self._check_timeout()
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
        return self._match(final=False)

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
            pair = self._pair(best, ir)
            if pair is not None:
                out.append(pair)
        if final:
            # Nothing more will arrive: whatever is left has no partner.
            self.counts["unmatched_vis"] += len(self._vis)
            self.counts["unmatched_ir"] += len(self._ir)
            self._vis.clear()
            self._ir.clear()
        return out

    def _pair(self, vis: Packet, ir: Packet) -> Packet | None:
        if self._cal is None:
            # calibration: auto, no estimate yet: this pair feeds the estimator and is not fused
            self.counts["uncalibrated"] = self.counts.get("uncalibrated", 0) + 1
            if not ir.meta.get("ir_frozen"):
                self._offer_estimate(vis, ir)
            return None
        frozen = bool(ir.meta.get("ir_frozen"))
        if self._refiner is not None and not frozen:   # a frozen IR frame is not the scene now
            self._maybe_refine(vis, ir)
        elif self._refiner is not None:
            with self._refine_lock:
                self.refine_counts["skipped_frozen"] = self.refine_counts.get("skipped_frozen", 0) + 1
        cal = self._cal                                # read once: refinement may swap it meanwhile
        vis_img = cal.warp(vis.buffers["vis"])         # IR size, VIS channels
        ir_img = ir.buffers["ir"]
        counts = ir.buffers.get("ir_counts")           # 16-bit IR: cut and scaled like the picture
        if self.config.crop is not None:
            x, y, w, h = self.config.crop
            vis_img, ir_img = vis_img[y:y + h, x:x + w], ir_img[y:y + h, x:x + w]
            counts = None if counts is None else counts[y:y + h, x:x + w]
        if self.config.output_size is not None:
            size = tuple(self.config.output_size)
            if (ir_img.shape[1], ir_img.shape[0]) != size:
                vis_img = cv2.resize(vis_img, size, interpolation=cv2.INTER_AREA)
                ir_img = cv2.resize(ir_img, size, interpolation=cv2.INTER_AREA)
                counts = None if counts is None else cv2.resize(counts, size, interpolation=cv2.INTER_AREA)
        thermal = {k: ir.meta[k] for k in ("ir_frozen", "ir_age_ms", "ir_ffc_jump_counts") if k in ir.meta}
        if counts is not None:
            counts = np.ascontiguousarray(counts)
            thermal.update(self._ir_frames.pair_meta(counts))
        skew_ms = (vis.t_mono - ir.t_mono) * 1000.0
        self._skews.append(skew_ms)
        if len(self._skews) > 2000:
            del self._skews[:1000]
        self.counts["pairs"] += 1
        pkt = Packet(stream=self.config.stream or ir.stream, kind="pair", seq=self._seq,
                     t_mono=ir.t_mono, t_wall=ir.t_wall, pts=ir.pts,
                     buffers={"vis": np.ascontiguousarray(vis_img), "ir": np.ascontiguousarray(ir_img),
                              **({"ir_counts": counts} if counts is not None else {})},
                     meta={"skew_ms": round(skew_ms, 3), "vis_seq": vis.seq, "ir_seq": ir.seq,
                           "calibration_id": cal.id, "vis_t_mono": vis.t_mono,
                           "vis_pts": vis.pts, "ir_pts": ir.pts,
                           "vis_source": vis.meta.get("source", ""), "ir_source": ir.meta.get("source", ""),
                           "clock": ir.meta.get("clock", "capture"), **thermal})
        self._seq += 1
        return pkt
