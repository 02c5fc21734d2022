"""Video file source (PyAV): any container/codec FFmpeg reads, as frame packets.

Finite: after the last frame read() returns one eos packet (unless `loop`). By default frames
come as fast as the caller reads them (lossless: nothing is ever dropped); `realtime` paces them
by their PTS like a camera would. Timestamps use the media clock (see stages.capture.source):
t_mono = t_mono_at_start + (pts - first_pts), so a VIS and an IR file started together pair by
timestamp at any reading speed. With `loop`, each pass continues the clock and the pts where the
previous pass ended, so time never goes backwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.packet import Packet
from stages.capture.source import SYSTEM_CLOCK, CaptureError, FrameSource, HostClock, MediaClock, check_modality


@dataclass
class VideoFileConfig:
    path: str = ""                     # e.g. recordings/vis.mp4
    modality: str = "vis"              # "vis" -> BGR frames, "ir" -> gray frames (colour files are converted)
    stream: str = "file"               # Packet.stream
    realtime: bool = False             # True: pace by PTS; False: as fast as read
    loop: bool = False                 # True: start again at the end (no eos)
    max_frames: int | None = None      # eos after this many frames; None = the whole file (or endless with loop)
    decoder_threads: int = 0           # FFmpeg decoder threads; 0 = auto
    clock_origin_mono: float | None = None  # time.monotonic() of media time 0; None = at start().
                                       # Set the same value for both cameras to align them exactly.


class VideoFileSource(FrameSource):
    """Frames of a video file. read(timeout_s) -> Packet | None (not yet due) | eos packet once."""

    Config = VideoFileConfig
    kind = "file"

    def __init__(self, config: VideoFileConfig, clock: HostClock = SYSTEM_CLOCK) -> None:
        check_modality(config.modality, "video_file")
        self.config = config
        self._host = clock
        self.frames = 0
        self._container = None
        self._frames_iter = None
        self._clock: MediaClock | None = None
        self._pending: tuple | None = None     # (frame, media_s, pts) decoded but not yet due (realtime)
        self._first_pts: float | None = None
        self._last_pts = 0.0
        self._period = 0.0                     # nominal frame period, s (for missing PTS and loop joins)
        self._offset = 0.0                     # added to pts after each loop
        self._done = False

    def start(self) -> None:
        # Clock first: the time spent opening must not shift this camera against the other one.
        clock = MediaClock.starting_at(self.config.clock_origin_mono, self._host)
        self._open()
        self._clock = clock

    def _open(self) -> None:
        path = self.config.path
        if not Path(path).is_file():
            raise CaptureError(f"video_file: {path!r} does not exist or is not a file (key 'path')")
        try:
            self._container = av.open(path)
            video = self._container.streams.video[0]
        except (av.FFmpegError, OSError, IndexError) as e:
            raise CaptureError(f"video_file: cannot read {path!r} as video: {e}") from e
        video.codec_context.thread_count = self.config.decoder_threads
        # A gray stream deeper than 8 bits (FFV1 / PNG / raw gray16le, gray12le...) is an IR camera's
        # counts: keep them as uint16 for registration's AGC and radiometry instead of an 8-bit picture.
        pix = video.codec_context.pix_fmt or ""
        self._gray16 = self.config.modality == "ir" and pix.startswith("gray") and pix not in ("gray", "grayf32le", "grayf32be")
        rate = video.average_rate or video.guessed_rate or 25
        self._period = 1.0 / float(rate)
        self._frames_iter = self._container.decode(video)

    def _next_frame(self):
        """Next decoded frame or None at the end of the file (raises CaptureError on bad data)."""
        try:
            return next(self._frames_iter)
        except StopIteration:
            return None
        except av.FFmpegError as e:
            raise CaptureError(f"video_file: decoding {self.config.path!r} failed after {self.frames} frames: {e}") from e

    def read(self, timeout_s: float) -> Packet | None:
        self._started(self._clock)
        if self._done:
            return None
        cfg = self.config
        if self._pending is None:
            if cfg.max_frames is not None and self.frames >= cfg.max_frames:
                return self._eos()
            frame = self._next_frame()
            if frame is None and cfg.loop and self.frames > 0:
                # Next pass starts one frame period after this pass's last frame.
                self._offset += self._last_pts - self._first_pts + self._period
                self._container.close()
                self._open()
                frame = self._next_frame()
            if frame is None:
                return self._eos()
            self._pending = frame
        frame = self._pending
        pts = float(frame.time) if frame.time is not None else self._last_pts + self._period
        if self._first_pts is None:
            self._first_pts = pts
        media_s = pts - self._first_pts + self._offset
        if cfg.realtime and not self._clock.wait_until(media_s, timeout_s):
            return None
        self._pending = None
        self._last_pts = pts
        # PyAV hands out views with padded rows; consumers and the wire codec want dense arrays.
        fmt = "bgr24" if cfg.modality == "vis" else ("gray16le" if self._gray16 else "gray")
        image = np.ascontiguousarray(frame.to_ndarray(format=fmt))
        t_mono, t_wall = self._clock.stamp(media_s, live=cfg.realtime)
        packet = Packet(stream=cfg.stream, kind="frame", seq=self.frames, t_mono=t_mono, t_wall=t_wall,
                        pts=self._first_pts + media_s, buffers={cfg.modality: image},
                        meta={"modality": cfg.modality, "source": cfg.path, "clock": "media"})
        self.frames += 1
        return packet

    def _eos(self) -> Packet:
        self._done = True
        return Packet.eos(self.config.stream, seq=self.frames, modality=self.config.modality,
                          source=self.config.path, frames=self.frames)

    def stats(self) -> dict:
        return {"frames": self.frames}

    def stop(self) -> None:
        self._done = True
        container, self._container = self._container, None
        if container is not None:
            container.close()
