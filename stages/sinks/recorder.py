"""Recorder sink: H.264 into crash-safe, time-correct, rotating files.

Why these choices:
- Fragmented MP4 (moov first, then one moof+mdat per keyframe) or Matroska: both are playable up
  to the last complete fragment/cluster when the process is killed. A plain MP4 writes its index
  at close, so a killed recorder would leave an unplayable file. `flush_packets=1` hands every
  packet to the OS at once, so SIGKILL loses at most the fragment still in memory (one GOP).
- GOP of `gop_s` seconds: each keyframe starts a fragment, so it bounds what a crash can lose.
- PTS from capture time (1/1000 s): frame i gets pts = t_mono_i - t_mono_first. Dropped frames
  leave a gap instead of shortening the video, so a file's duration is the wall time it covers.
- libx264 with tune=zerolatency: no lookahead or B-frames, so packets leave the encoder as soon
  as frames enter and a crash loses nothing buffered inside x264.
- Segments rotate every `segment_s` seconds of capture time: `fused_000.mp4`, `fused_001.mp4`...
  Numbering continues after files already in out_dir, so a restart never overwrites a recording.

Optional second output: side by side VIS | IR | fused (| smoke map t, when the fusion stage made
one) (`{prefix}_sbs_NNN.mp4`), for review.

A full disk (ENOSPC, or a quota: EDQUOT) is not a crash to retry: `on_disk_full: stop_recording`
(default) logs one line, closes what it can and stops recording, counting every later frame as
dropped (`drops`, `disk_full` in stats()), while the stage keeps consuming, so fusion and the
detector feed go on; `exit` ends the run with that one line instead (no restart). Frames the
muxer held in the fragment that could not be written are taken off `frames_written` (by decoding
what reached the disk) and counted as dropped too, so frames_written + drops = frames received.
Segments closed before the disk filled are untouched and play to their end; the segment being
written (and one being finished as the disk filled) plays up to where the disk cut it.
"""
from __future__ import annotations

import datetime as dt
import errno
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.packet import Packet

log = logging.getLogger(__name__)

CONTAINERS = {"mp4": ("mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
              "mkv": ("matroska", {})}
_TIME_BASE = Fraction(1, 1000)          # PTS unit: milliseconds of capture time


class RecorderError(RuntimeError):
    """Recording failed (bad config, missing buffer, encoder or disk error). One line."""


class DiskFullError(RecorderError):
    """The recording's file system is full (or over quota). One line."""
    restartable = False          # a restarted recorder would find the disk just as full


def _disk_full(e: BaseException) -> bool:
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class RecorderConfig:
    """Where and how to record. Durations in seconds of capture time."""

    out_dir: str = "out/recordings"  # created if missing
    prefix: str = "fused"            # files are {prefix}_{NNN}.{container}
    buffer: str = "fused"            # which packet buffer to record ("fused", "vis", "ir")
    container: str = "mp4"           # "mp4" (fragmented MP4) or "mkv" (Matroska)
    segment_s: float | None = 60.0   # start a new file after this long; None = one file
    fps: float = 10.0                # nominal frame rate: rate control and the last frame's duration
    gop_s: float = 1.0               # keyframe/fragment interval: what a crash can lose at most
    crf: int = 23                    # x264 quality (lower = better, bigger); 18-28 is sensible
    preset: str = "veryfast"         # x264 speed preset
    threads: int = 1                 # encoder threads; 0 = auto (the machine is shared, keep it low)
    side_by_side: bool = False       # also write VIS | IR | fused (| smoke map) to {prefix}_sbs_NNN
    on_disk_full: Literal["stop_recording", "exit"] = "stop_recording"  # stop_recording: one error line,
                                     # count later frames as dropped, the run goes on | exit: end the run


class _SegmentWriter:
    """One rotating output: opens a file on the first frame, rotates on time or size change."""

    def __init__(self, cfg: RecorderConfig, prefix: str) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.files: list[Path] = []
        self.frames_written = 0
        self._file_frames: list[int] = []   # frames written into each file, in order
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None       # (w, h) of the open segment
        self._t0 = 0.0                                  # t_mono of the segment's first frame
        self._last_pts = -1
        ext = cfg.container
        taken = [int(m.group(1)) for p in Path(cfg.out_dir).glob(f"{prefix}_*.{ext}")
                 if (m := re.fullmatch(rf"{re.escape(prefix)}_(\d+)\.{ext}", p.name))]
        self._next_index = max(taken, default=-1) + 1

    def write(self, image: np.ndarray, t_mono: float, t_wall: float, stream_name: str) -> None:
        """Encode one frame: (H, W, 3) uint8 BGR or (H, W) uint8 gray; odd sizes are padded."""
        image = _even(image)
        h, w = image.shape[:2]
        seg = self.cfg.segment_s
        if self._container is not None and ((w, h) != self._size or (seg and t_mono - self._t0 >= seg)):
            self.close()
        if self._container is None:
            self._open(w, h, t_mono, t_wall, stream_name)
        pts = int(round((t_mono - self._t0) / _TIME_BASE))
        pts = max(pts, self._last_pts + 1)              # strictly increasing even if stamps repeat
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(image, format="bgr24" if image.ndim == 3 else "gray")
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = _TIME_BASE
        frame.duration = int(round(1.0 / self.cfg.fps / _TIME_BASE))
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as e:
            if _disk_full(e):
                raise DiskFullError(f"recorder: disk full writing {self.files[-1]} ({_free(self.cfg.out_dir)})") from e
            raise RecorderError(f"recorder: writing {self.files[-1]} failed: {e}") from e
        self.frames_written += 1
        self._file_frames[-1] += 1

    def _open(self, w: int, h: int, t_mono: float, t_wall: float, stream_name: str) -> None:
        cfg = self.cfg
        fmt, options = CONTAINERS[cfg.container]
        path = Path(cfg.out_dir) / f"{self.prefix}_{self._next_index:03d}.{cfg.container}"
        self._next_index += 1
        try:
            container = av.open(str(path), "w", format=fmt, options={**options, "flush_packets": "1"})
        except (av.FFmpegError, OSError) as e:
            if _disk_full(e):
                raise DiskFullError(f"recorder: disk full creating {path} ({_free(cfg.out_dir)})") from e
            raise RecorderError(f"recorder: cannot create {path}: {e}") from e
        # The wall time of pts 0, so any frame's wall time is recoverable from the file alone.
        container.metadata["creation_time"] = dt.datetime.fromtimestamp(t_wall, dt.timezone.utc).isoformat()
        container.metadata["comment"] = f"stream={stream_name} t_wall_at_pts0={t_wall:.6f}"
        gop = max(1, int(round(cfg.gop_s * cfg.fps)))
        stream = container.add_stream("libx264", rate=Fraction(cfg.fps).limit_denominator(1001),
                                      options={"preset": cfg.preset, "tune": "zerolatency", "crf": str(cfg.crf)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = cfg.threads
        self._container, self._stream = container, stream
        self._size, self._t0, self._last_pts = (w, h), t_mono, -1
        self.files.append(path)
        self._file_frames.append(0)
        log.info("recording %s (%dx%d, gop %d frames)", path, w, h, gop)

    def close(self) -> None:
        """Flush the encoder and finish the file. Idempotent."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
            container.close()
        except (av.FFmpegError, OSError) as e:
            self._stream = None
            if _disk_full(e):
                raise DiskFullError(f"recorder: disk full closing {self.files[-1]} ({_free(self.cfg.out_dir)})") from e
            raise
        self._stream = None

    def abandon(self) -> int:
        """The file system is full: drop the open file as it is. Returns the frames that never
        reached the disk, counted by decoding what did; frames_written no longer counts them.

        The file being written plays up to where the disk cut it (the fragment the muxer held is
        lost); so may the one before it, when it was finished on an already full disk (FFmpeg does
        not report every failed write when a file is closed), so both are decoded."""
        container, self._container, self._stream = self._container, None, None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass              # the trailing fragment cannot be written either
        for i in range(max(0, len(self.files) - 2), len(self.files)):
            self._file_frames[i] = min(self._file_frames[i], _playable_frames(self.files[i]))
        kept = sum(self._file_frames)
        lost, self.frames_written = self.frames_written - kept, kept
        return lost


def _playable_frames(path: Path) -> int:
    """Frames that decode from `path`, up to the first broken packet (0 if it cannot be opened)."""
    n = 0
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                n += 1
    except (av.FFmpegError, OSError, IndexError):
        pass
    return n


def _free(path: str) -> str:
    """'N bytes free on PATH' for error lines."""
    import shutil
    try:
        return f"{shutil.disk_usage(path).free} bytes free on {path}"
    except OSError:
        return f"free space on {path} unknown"


def _even(image: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height: pad the last row/column by replication."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image)


def side_by_side(packet: Packet) -> np.ndarray:
    """VIS | IR | fused of a pair/fused packet, plus the smoke map t when the packet has one
    (buffer "smoke", t * 255, drawn with the viridis colour map: dark = smoke, yellow = clear air):
    (H, 3*W or 4*W, 3) uint8 BGR (heights matched to IR)."""
    missing = [k for k in ("vis", "ir", "fused") if k not in packet.buffers]
    if missing:
        raise RecorderError(f"recorder: side_by_side needs buffers vis, ir, fused; packet {packet.seq} "
                            f"({packet.kind}) lacks {missing}")
    h = packet.buffers["ir"].shape[0]
    tiles = []
    for name in ("vis", "ir", "fused", "smoke"):
        img = packet.buffers.get(name)
        if img is None:
            continue
        if name == "smoke":
            img = cv2.applyColorMap(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLORMAP_VIRIDIS)
        elif img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if img.shape[0] != h:
            img = cv2.resize(img, (int(round(img.shape[1] * h / img.shape[0])), h), interpolation=cv2.INTER_AREA)
        tiles.append(img)
    return np.hstack(tiles)


class RecorderSink:
    """Records one buffer of every packet (and optionally a side-by-side view) to H.264 files.

    process(packet): frame/pair/fused packets are encoded; finish() (end of stream) flushes and
    closes the files (a later frame starts a new segment). stop() does the same. `files` lists
    every file written, in order.
    """
    Config = RecorderConfig
    inputs = ("fused",)
    outputs: tuple[str, ...] = ()

    def __init__(self, config: RecorderConfig) -> None:
        if config.container not in CONTAINERS:
            raise RecorderError(f"recorder: container must be one of {tuple(CONTAINERS)}, got {config.container!r}")
        if config.fps <= 0 or config.gop_s <= 0:
            raise RecorderError(f"recorder: fps and gop_s must be > 0, got fps={config.fps}, gop_s={config.gop_s}")
        if config.segment_s is not None and config.segment_s <= 0:
            raise RecorderError(f"recorder: segment_s must be > 0 or None, got {config.segment_s}")
        self.config = config
        self._writers: list[_SegmentWriter] = []
        self.drops = 0                # frames not recorded (disk full), counted
        self.disk_full: str | None = None   # the one-line error once recording stopped for a full disk

    def start(self) -> None:
        cfg = self.config
        try:
            Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecorderError(f"recorder: cannot create out_dir {cfg.out_dir!r}: {e}") from e
        self._writers = [_SegmentWriter(cfg, cfg.prefix)]
        if cfg.side_by_side:
            self._writers.append(_SegmentWriter(cfg, f"{cfg.prefix}_sbs"))

    def process(self, packet: Packet) -> list[Packet]:
        if not self._writers:
            raise RecorderError("recorder: process() before start()")
        image = packet.buffers.get(self.config.buffer)
        if image is None:
            raise RecorderError(f"recorder: buffer {self.config.buffer!r} (key 'buffer') not in packet "
                                f"{packet.seq} ({packet.kind}); it has {sorted(packet.buffers)}")
        if self.disk_full is not None:
            self.drops += 1
            return []
        written = self._writers[0].frames_written
        try:
            self._writers[0].write(image, packet.t_mono, packet.t_wall, packet.stream)
            if self.config.side_by_side:
                self._writers[1].write(side_by_side(packet), packet.t_mono, packet.t_wall, packet.stream)
        except DiskFullError as e:
            self._stop_for_full_disk(e, this_frame_counted=self._writers[0].frames_written > written)
        return []

    def finish(self) -> list[Packet]:
        """End of stream: flush and close the files."""
        self._close_all()
        return []

    def _stop_for_full_disk(self, e: DiskFullError, this_frame_counted: bool) -> None:
        """Stop recording (on_disk_full: stop_recording) or end the run (exit)."""
        if self.config.on_disk_full == "exit":
            for w in self._writers:
                w.abandon()
            raise DiskFullError(f"{e}; recorder.on_disk_full: exit ends the run") from None
        lost = sum(w.abandon() for w in self._writers[:1]) + (0 if this_frame_counted else 1)
        for w in self._writers[1:]:
            w.abandon()
        self.drops += lost
        self.disk_full = str(e)
        log.error("%s; recording stopped (recorder.on_disk_full: stop_recording), fusion and the detector "
                  "feed go on; %d frames not recorded so far", e, lost)

    @property
    def files(self) -> list[Path]:
        """Every file written so far: the main output's files in order, then the side-by-side ones."""
        return [f for w in self._writers for f in w.files]

    @property
    def frames_written(self) -> int:
        return self._writers[0].frames_written if self._writers else 0

    def stats(self) -> dict:
        """JSON-able counters for telemetry."""
        out = {"frames_written": self.frames_written, "files": [str(f) for f in self.files], "drops": self.drops}
        if self.disk_full is not None:
            out["disk_full"] = self.disk_full
        return out

    def _close_all(self) -> None:
        errors = []
        for w in self._writers:
            try:
                w.close()
            except DiskFullError as e:
                if self.config.on_disk_full == "exit":
                    errors.append(str(e))
                elif self.disk_full is None:
                    self._stop_for_full_disk(e, this_frame_counted=True)
            except (av.FFmpegError, OSError) as e:      # close the others anyway
                errors.append(str(e))
        if errors:
            raise RecorderError(f"recorder: closing files in {self.config.out_dir} failed: {'; '.join(errors)}")

    def stop(self) -> None:
        self._close_all()
