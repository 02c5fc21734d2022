"""A synthetic camera: one modality of the smoky street of common/synthetic_scene.py, as a source.

`SyntheticSource(SyntheticConfig(modality="vis"|"ir"))` emits frame packets, paced in real time by
default (live: when the reader falls behind, stale frames are skipped and counted as drops) or
unpaced (every frame, as fast as the caller reads; for tests and benches).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.synthetic_scene import IR_FPS, VIS_FPS, check_scene, render_ir, render_vis, world_of
from pipeline.packet import Packet
from stages.capture.source import SYSTEM_CLOCK, CaptureError, FrameSource, HostClock, MediaClock, check_modality

FFC_JUMP_COUNTS = 6            # 16-bit IR: counts added after every other simulated FFC (~0.1 K at 34 °C)


@dataclass
class SyntheticConfig:
    """One synthetic camera. Two instances with the same seed/scene see the same world."""

    modality: str = "vis"            # "vis" (640x480 BGR) or "ir" (320x256 gray)
    seed: int = 0                    # world and jitter seed
    scene: str = "smoke"             # "smoke" (street in smoke) or "target" (heated checkerboard)
    smoke: float = 1.0               # smoke density multiplier; 0 = clear air
    fps: float | None = None         # frames per second; None = 20 for vis, 10 for ir
    jitter_ms: float | None = None   # capture-time jitter, uniform +-ms; None = 1 for vis, 4 for ir
    paced: bool = True               # True: real time, live (late frames skipped, counted as drops)
                                     # False: every frame, as fast as read (media clock)
    max_frames: int | None = None    # frame periods before eos (dropped ones count); None = endless
    stream: str = "synthetic"        # Packet.stream
    clock_origin_mono: float | None = None  # time.monotonic() of frame 0; None = at start().
                                     # Set the same value for both cameras to align them exactly.
    bits: int = 8                    # ir: 8 = a picture (0..255) | 16 = radiometric counts (thermal/scene.py:
                                     # person 34 °C, engine 80 °C, fire 400 °C; Planck constants thermal.scene.PLANCK)
    ffc_every_s: float = 0.0         # ir, 16 bit: a flat-field correction every this many seconds; 0 = never
    ffc_freeze_s: float = 0.5        # ... the frame freezes this long, then the counts jump by FFC_JUMP_COUNTS


class SyntheticSource(FrameSource):
    """A synthetic camera producing `Packet(kind="frame")`.

    Frame n shows the world at scene time t_n = n / fps + jitter_n (jitter_n deterministic from
    seed, modality and n), stamped t_mono = start + t_n; pts = n / fps (the camera's regular frame
    clock). seq = n, so gaps in seq are dropped frames.
    """

    Config = SyntheticConfig
    kind = "synthetic"

    @staticmethod
    def is_live(config: SyntheticConfig) -> bool:
        """Paced: a live camera (late frames are dropped); unpaced: lossless."""
        return config.paced

    def __init__(self, config: SyntheticConfig, clock: HostClock = SYSTEM_CLOCK) -> None:
        check_modality(config.modality, "synthetic")
        try:
            check_scene(config.scene)
        except ValueError as e:
            raise CaptureError(str(e)) from None
        self.config = config
        self._host = clock
        self.fps = float(config.fps or (VIS_FPS if config.modality == "vis" else IR_FPS))
        if self.fps <= 0:
            raise CaptureError(f"synthetic: fps must be > 0, got {config.fps!r}")
        jitter = config.jitter_ms if config.jitter_ms is not None else (1.0 if config.modality == "vis" else 4.0)
        if not 0 <= jitter < 500.0 / self.fps:
            raise CaptureError(f"synthetic: jitter_ms must be in [0, half a frame = {500 / self.fps:.1f}), got {jitter}")
        self.jitter_s = jitter / 1000.0
        if config.bits not in (8, 16) or (config.bits == 16 and (config.modality != "ir" or config.scene != "smoke")):
            raise CaptureError(f"synthetic: bits must be 8, or 16 for the IR camera of the smoke scene; got bits={config.bits} "
                               f"for modality {config.modality!r}, scene {config.scene!r}")
        if config.ffc_every_s < 0 or config.ffc_freeze_s <= 0 or 0 < config.ffc_every_s <= config.ffc_freeze_s:
            raise CaptureError(f"synthetic: expected ffc_every_s >= 0 and 0 < ffc_freeze_s < ffc_every_s, got "
                               f"{config.ffc_every_s}, {config.ffc_freeze_s}")
        self._frozen: np.ndarray | None = None   # 16 bit: the frame repeated during an FFC
        self.frames = 0
        self.drops = 0
        self._next = 0
        self._clock: MediaClock | None = None
        self._done = False
        self._source = f"synthetic://{config.modality}?seed={config.seed}&scene={config.scene}"

    def start(self) -> None:
        world_of(self.config.seed)        # build the world (~0.1 s) before the clock starts
        self._clock = MediaClock.starting_at(self.config.clock_origin_mono, self._host)

    def frame_time(self, n: int) -> float:
        """Scene/capture time of frame n in seconds after start (nominal + jitter)."""
        rng = np.random.default_rng([self.config.seed, 0 if self.config.modality == "vis" else 1, n])
        return n / self.fps + self.jitter_s * float(rng.uniform(-1.0, 1.0))

    def read(self, timeout_s: float) -> Packet | None:
        """Next frame packet, None if none is due within timeout_s, an eos packet once at the end."""
        self._started(self._clock)
        if self._done:
            return None
        cfg = self.config
        n = self._next
        if cfg.paced:
            # Live camera: the newest frame already due replaces any the reader missed.
            now = self._host.mono() - self._clock.mono0
            due = int(math.floor(now * self.fps))
            if due > n and self.frame_time(due) <= now:
                self.drops += due - n
                n = due
        if cfg.max_frames is not None and n >= cfg.max_frames:
            self._done = True
            return Packet.eos(cfg.stream, seq=n, modality=cfg.modality, source=self._source,
                              frames=self.frames, drops=self.drops)
        t_n = self.frame_time(n)
        if cfg.paced and not self._clock.wait_until(t_n, timeout_s):
            return None
        if cfg.modality == "vis":
            buf = render_vis(t_n, cfg.seed, cfg.scene, cfg.smoke)
        elif cfg.bits == 16:
            buf = self._counts(t_n, n)
        else:
            buf = render_ir(t_n, cfg.seed, cfg.scene, cfg.smoke)
        t_mono, t_wall = self._clock.stamp(t_n, live=cfg.paced)
        self._next = n + 1
        self.frames += 1
        return Packet(stream=cfg.stream, kind="frame", seq=n, t_mono=t_mono, t_wall=t_wall, pts=n / self.fps,
                      buffers={cfg.modality: buf},
                      meta={"modality": cfg.modality, "source": self._source,
                            "clock": "capture" if cfg.paced else "media"})

    def _counts(self, t_n: float, n: int) -> np.ndarray:
        """A 16-bit radiometric frame, frozen during a simulated FFC (and offset after each one)."""
        from thermal.scene import render_ir_counts
        cfg = self.config
        ffcs = int(t_n // cfg.ffc_every_s) if cfg.ffc_every_s > 0 else 0
        if ffcs and t_n - ffcs * cfg.ffc_every_s < cfg.ffc_freeze_s and self._frozen is not None:
            return self._frozen
        counts = render_ir_counts(t_n, cfg.seed, cfg.smoke, frame=n)
        if ffcs % 2:                  # the new offsets after each FFC: up, then back down
            counts = counts + np.uint16(FFC_JUMP_COUNTS)
        self._frozen = counts
        return counts

    def stats(self) -> dict:
        return {"frames": self.frames, "drops": self.drops}

    def stop(self) -> None:
        self._done = True
