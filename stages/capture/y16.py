"""Raw Y16 IR frames: a UVC thermal camera (/dev/videoN through FFmpeg's v4l2 input) or a file
of raw 16-bit frames, delivered as (H, W) uint16 counts.

    open_source("/dev/video2", modality="ir", width=160, height=120, fps=9)          # PureThermal / Lepton
    open_source("/dev/video0", modality="ir", width=640, height=512, fps=30)         # Boson, Y16 mode
    open_source("flight.y16", modality="ir", width=640, height=512, fps=30)          # raw frames, one after another

FLIR Boson, Lepton on a PureThermal board and most OEM cores offer a UVC format "Y16": each pixel
a little-endian 16-bit count, which FFmpeg calls `gray16le`. A device is opened with the
options `video_size`, `framerate` and `pixel_format` (what `ffmpeg -f v4l2 -pixel_format gray16le
-video_size 160x120 -framerate 9 -i /dev/video2` does), frames are stamped when they leave the
driver, and a reader slower than the camera skips to the newest frame (counted as drops), like an
RTSP camera. A file is a plain concatenation of frames (FFmpeg's rawvideo), read in order,
nothing dropped, stamped on a media clock at `fps` (paced in real time with `realtime: true`); its
size must be a whole number of frames.

Which `pixel_format` a device offers: `v4l2-ctl -d /dev/video2 --list-formats-ext` ("Y16 " is
gray16le). Errors are one line naming the device or file and what was expected.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import av
import numpy as np

from pipeline.packet import Packet
from stages.capture.source import CaptureError, FrameSource, MediaClock, check_modality

log = logging.getLogger(__name__)
RAW_SUFFIXES = (".y16", ".raw", ".gray16")
BYTES = {"gray16le": 2, "gray16be": 2}


@dataclass
class Y16Config:
    """A Y16 device or raw file. Sizes in pixels, rates in frames per second."""

    path: str = ""                  # /dev/videoN (UVC camera) or a raw file (*.y16, *.raw, *.gray16)
    modality: str = "ir"            # raw counts are IR
    stream: str = "camera"          # Packet.stream
    width: int = 0                  # frame width; required for a file; device: 0 = its current format
    height: int = 0                 # frame height; as width
    fps: float = 0.0                # file: frames per second (required); device: requested rate, 0 = its current one
    pixel_format: str = "gray16le"  # Y16 = gray16le; gray16be for big-endian files
    realtime: bool = False          # file: pace at fps like a live camera; False = as fast as read (lossless)
    open_timeout_s: float = 5.0     # device: the first frame must come within this, seconds


def is_y16(spec: str) -> bool:
    """True for a path this source reads: a video4linux device or a raw frame file."""
    return spec.startswith("/dev/video") or spec.lower().endswith(RAW_SUFFIXES)


def open_args(cfg: Y16Config) -> tuple[str, dict]:
    """(FFmpeg input format, its options) for the device or file: what av.open() gets."""
    options = {"pixel_format": cfg.pixel_format}
    if cfg.width and cfg.height:
        options["video_size"] = f"{cfg.width}x{cfg.height}"
    if cfg.fps:
        options["framerate"] = f"{cfg.fps:g}"
    return ("v4l2" if cfg.path.startswith("/dev/") else "rawvideo"), options


class Y16Source(FrameSource):
    """16-bit IR frames from a UVC device or a raw file: `Packet(kind="frame")` with buffer
    {"ir": (H, W) uint16}. See the module docstring."""

    Config = Y16Config
    kind = "y16"

    @staticmethod
    def is_live(config: Y16Config) -> bool:
        """A camera device is live (the newest frame wins); a file of raw frames only when paced."""
        return config.path.startswith("/dev/") or config.realtime

    def __init__(self, config: Y16Config) -> None:
        check_modality(config.modality, "y16")
        if config.modality != "ir":
            raise CaptureError(f"y16: {config.path}: Y16 frames are 16-bit IR counts; modality must be 'ir'")
        if config.pixel_format not in BYTES:
            raise CaptureError(f"y16: {config.path}: pixel_format must be one of {sorted(BYTES)}, got {config.pixel_format!r}")
        self.device = config.path.startswith("/dev/")
        if not self.device:
            if not (config.width > 0 and config.height > 0 and config.fps > 0):
                raise CaptureError(f"y16: {config.path}: a raw file needs width, height and fps "
                                   f"(got {config.width}x{config.height} at {config.fps:g} fps)")
        if (config.width > 0) != (config.height > 0) or config.width < 0 or config.height < 0 or config.fps < 0:
            raise CaptureError(f"y16: {config.path}: width and height are both set (> 0) or both 0, fps >= 0; "
                               f"got {config.width}x{config.height}, {config.fps:g} fps")
        self.config = config
        self.frames = 0
        self.drops = 0
        self._container = None
        self._iter = None
        self._clock: MediaClock | None = None
        self._done = False
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._slot: tuple | None = None         # device: (array, seq, t_mono, t_wall)
        self._error: CaptureError | None = None
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        if not self.device:
            frame_bytes = cfg.width * cfg.height * BYTES[cfg.pixel_format]
            try:
                size = os.path.getsize(cfg.path)
            except OSError as e:
                raise CaptureError(f"y16: cannot read {cfg.path} ({e.strerror or e})") from None
            if size == 0 or size % frame_bytes:
                raise CaptureError(f"y16: {cfg.path}: {size} bytes is not a whole number of {cfg.width}x{cfg.height} "
                                   f"{cfg.pixel_format} frames ({frame_bytes} bytes each); check width and height")
        fmt, options = open_args(cfg)
        try:
            self._container = av.open(cfg.path, format=fmt, options=options)
        except (av.FFmpegError, OSError) as e:
            what = "a v4l2 device offering" if self.device else "raw"
            raise CaptureError(f"y16: cannot open {cfg.path} as {what} {cfg.pixel_format} "
                               f"{options.get('video_size', 'its default size')} at {options.get('framerate', 'its default rate')} "
                               f"fps: {getattr(e, 'strerror', None) or e}") from None
        self._iter = self._container.decode(video=0)
        if self.device:
            self._thread = threading.Thread(target=self._pump, name="y16-device", daemon=True)
            self._thread.start()
        else:
            self._clock = MediaClock.starting_at(None)

    def stop(self) -> None:
        self._stop.set()
        self._done = True
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.config.open_timeout_s + 1.0)
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def stats(self) -> dict:
        return {"frames": self.frames, "drops": self.drops}

    # -- frames ------------------------------------------------------------------------------------
    def _counts(self, frame) -> np.ndarray:
        arr = frame.to_ndarray()
        if arr.dtype != np.uint16 or arr.ndim != 2:
            raise CaptureError(f"y16: {self.config.path}: decoded {frame.format.name} frames, not 16-bit gray "
                               f"(pixel_format {self.config.pixel_format}); the device may not offer Y16 at this size")
        return np.ascontiguousarray(arr)

    def _packet(self, counts, seq, t_mono, t_wall, pts, clock) -> Packet:
        return Packet(stream=self.config.stream, kind="frame", seq=seq, t_mono=t_mono, t_wall=t_wall, pts=pts,
                      buffers={"ir": counts}, meta={"modality": "ir", "source": self.config.path, "clock": clock})

    def read(self, timeout_s: float) -> Packet | None:
        """The next frame (file) or the newest one (device); None if none yet; eos once at a file's end."""
        if self._iter is None:
            raise CaptureError("y16: read() before start()")
        if self.device:
            return self._read_device(timeout_s)
        if self._done:
            return None
        cfg = self.config
        media_s = self.frames / cfg.fps
        if cfg.realtime and not self._clock.wait_until(media_s, timeout_s):
            return None
        try:
            frame = next(self._iter)
        except StopIteration:
            self._done = True
            return Packet.eos(cfg.stream, seq=self.frames, modality="ir", source=cfg.path, frames=self.frames)
        except av.FFmpegError as e:
            raise CaptureError(f"y16: {cfg.path}: frame {self.frames} cannot be read: {e}") from None
        t_mono, t_wall = self._clock.stamp(media_s, live=cfg.realtime)
        pkt = self._packet(self._counts(frame), self.frames, t_mono, t_wall, media_s,
                           "capture" if cfg.realtime else "media")
        self.frames += 1
        return pkt

    def _read_device(self, timeout_s: float) -> Packet | None:
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self._error is not None, timeout=max(timeout_s, 0.0))
            slot, self._slot = self._slot, None
            if slot is None and self._error is not None:
                raise self._error
        if slot is None:
            return None
        counts, seq, t_mono, t_wall = slot
        return self._packet(counts, seq, t_mono, t_wall, None, "capture")

    def _pump(self) -> None:
        """Device reader thread: keeps only the newest frame (a slow reader drops, counted)."""
        seq = 0
        try:
            for frame in self._iter:
                if self._stop.is_set():
                    return
                t_mono, t_wall = time.monotonic(), time.time()
                counts = self._counts(frame)
                with self._cond:
                    if self._slot is not None:
                        self.drops += 1
                    self._slot = (counts, seq, t_mono, t_wall)
                    self.frames += 1
                    self._cond.notify()
                seq += 1
            raise CaptureError(f"y16: {self.config.path}: the device stopped delivering frames")
        except (CaptureError, av.FFmpegError, OSError) as e:
            if self._stop.is_set():
                return
            err = e if isinstance(e, CaptureError) else CaptureError(f"y16: {self.config.path}: read failed: {e}")
            with self._cond:
                self._error = err
                self._cond.notify_all()
