"""RTSP camera source (PyAV/FFmpeg, H.264/H.265 over TCP) that survives a flaky network.

A reader thread connects, decodes, and puts each decoded frame into a 1-slot "latest frame"
buffer; read() takes whatever is newest. If the consumer is slower than the camera, older
frames are overwritten (and counted as drops), so latency never grows.

What FFmpeg does on its own, and why each guard exists:
- Without a timeout a stalled server blocks the reader forever, so av.open() gets
  timeout=(open_timeout_s, read_timeout_s): the first bounds the connect + RTSP handshake, the
  second every later read.
- When the server dies the decode loop just ends (no exception). On a live source that is a
  disconnect: close and reconnect.
- After a reconnect the stream can "open" and then deliver nothing; a first frame must arrive
  within first_frame_timeout_s or the attempt counts as failed.
- Reconnects back off exponentially (backoff_initial_s, x backoff_factor, capped at
  backoff_max_s), one warning per attempt. A stream that ran for at least backoff_max_s and
  then broke is reconnected at once; one that breaks sooner (a flapping camera) keeps backing off. After max_retries consecutive failed attempts read()
  raises RtspError (one line, URL masked, timeouts named); max_retries=None retries forever.

Passwords never leave this module: the URL is masked in logs, errors and packet meta, and FFmpeg's
own log output is left disabled (PyAV's default).

Timestamps: t_mono/t_wall are taken the moment a frame leaves the decoder (the host's best
knowledge of capture time; network + decode delay is not subtracted). pts is the stream's own
timestamp in seconds (None for frames the stream leaves unstamped); it restarts after a
reconnect, so `meta["connection"]` says which connection a frame came from.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import av
import numpy as np

from pipeline.packet import Packet
from pipeline.config import mask_url
from stages.capture.source import CaptureError, FrameSource, check_modality

log = logging.getLogger(__name__)


class RtspError(CaptureError):
    """The camera could not be read after the configured retries. One line, URL masked."""


@dataclass
class RtspConfig:
    """One RTSP camera. Times in seconds."""

    url: str = ""                          # rtsp://user:password@host:554/path (password is masked in logs)
    modality: str = "vis"                  # "vis" -> BGR frames, "ir" -> gray frames
    stream: str = "camera"                 # Packet.stream
    transport: str = "tcp"                 # "tcp" (no UDP loss/reordering) or "udp"
    open_timeout_s: float = 5.0            # connect + RTSP handshake
    read_timeout_s: float = 2.0            # any later read; a silent server is declared dead after this
    first_frame_timeout_s: float = 5.0     # after a (re)connect, the first decoded frame must come by then
    backoff_initial_s: float = 0.5         # wait before the first retry
    backoff_factor: float = 2.0            # each consecutive failure multiplies the wait
    backoff_max_s: float = 10.0            # cap on the wait
    max_retries: int | None = 5            # consecutive failed attempts before read() raises; None = forever
    decoder_threads: int = 1               # FFmpeg decoder threads; 1 keeps latency lowest
    ffmpeg_options: dict = field(default_factory=lambda: {"probesize": "2048", "analyzeduration": "0"})
                                           # small probe: open in ~0.1-0.3 s instead of seconds


class RtspSource(FrameSource):
    """Live RTSP camera producing `Packet(kind="frame")` with meta modality, source (masked), clock.

    seq counts decoded frames, so a gap in seq is frames overwritten before being read (drops).
    Counters (see stats()): frames, drops, reconnects, attempts, last_error, reconnect_events.
    """

    Config = RtspConfig
    kind = "rtsp"

    @staticmethod
    def is_live(config: RtspConfig) -> bool:
        return True

    def __init__(self, config: RtspConfig) -> None:
        check_modality(config.modality, "rtsp")
        if not config.url.startswith(("rtsp://", "rtsps://")):
            raise RtspError(f"rtsp: url must start with rtsp:// or rtsps://, got {mask_url(config.url)!r}")
        if config.transport not in ("tcp", "udp"):
            raise RtspError(f"rtsp: transport must be 'tcp' or 'udp', got {config.transport!r}")
        for key in ("open_timeout_s", "read_timeout_s", "first_frame_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if not getattr(config, key) > 0:
                raise RtspError(f"rtsp: {key} must be > 0, got {getattr(config, key)!r}")
        self.config = config
        self.source = mask_url(config.url)
        self._cond = threading.Condition()
        self._slot: tuple | None = None          # (av.VideoFrame, seq, t_mono, t_wall, pts, connection)
        self._fatal: RtspError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters, written by the reader thread, read by anyone (ints/str: safe under the GIL).
        self.frames = 0
        self.drops = 0
        self.reconnects = 0
        self.attempts = 0
        self.last_error: str | None = None
        self.connected = False
        self.t_start: float | None = None
        self.t_first_frame: float | None = None
        self.reconnect_events: list[dict] = []   # per successful reconnect, times in time.monotonic() s:
        # t_last_frame (before the loss), t_lost (loss detected), t_first_frame (after), gap_s (first - last)
        self._t_last_frame: float | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader thread; returns at once (read() waits for frames)."""
        if self._thread is not None:
            return
        self.t_start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"rtsp-{self.config.stream}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader. Bounded: FFmpeg gives up within the open/read timeouts."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.config.open_timeout_s + self.config.read_timeout_s + 1.0)
            if thread.is_alive():
                log.warning("rtsp %s: reader did not stop in time; leaving it (daemon thread)", self.source)

    def read(self, timeout_s: float) -> Packet | None:
        """The newest frame not yet read, waiting up to timeout_s; None if none came.

        Raises RtspError once the reader has given up (max_retries consecutive failures).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self._fatal is not None or self._stop.is_set(),
                                timeout=max(timeout_s, 0.0))
            slot, self._slot = self._slot, None
            if slot is None and self._fatal is not None:
                raise self._fatal
        if slot is None:
            return None
        frame, seq, t_mono, t_wall, pts, connection = slot
        # Converted here, not in the reader thread: frames overwritten before being read cost no conversion.
        # PyAV hands out views with padded rows; consumers and the wire codec want dense arrays.
        image = np.ascontiguousarray(frame.to_ndarray(format="bgr24" if self.config.modality == "vis" else "gray"))
        return Packet(stream=self.config.stream, kind="frame", seq=seq, t_mono=t_mono, t_wall=t_wall, pts=pts,
                      buffers={self.config.modality: image},
                      meta={"modality": self.config.modality, "source": self.source, "clock": "capture",
                            "connection": connection})

    def stats(self) -> dict:
        """JSON-able counters for telemetry."""
        return {"frames": self.frames, "drops": self.drops, "reconnects": self.reconnects, "attempts": self.attempts,
                "connected": self.connected, "last_error": self.last_error,
                "first_frame_s": None if self.t_first_frame is None else self.t_first_frame - self.t_start,
                "reconnect_events": list(self.reconnect_events)}

    # ---- reader thread ------------------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        failures = 0                          # consecutive attempts that produced no frame
        delay = cfg.backoff_initial_s
        connection = 0
        t_lost: float | None = None           # when the last good connection ended
        while not self._stop.is_set():
            self.attempts += 1
            t_first, reason = self._connect_and_pump(connection, t_lost)
            self.connected = False
            if self._stop.is_set():
                break
            got_frames = t_first is not None
            if got_frames:
                connection += 1
                failures = 0
                t_lost = time.monotonic()
                # A stream that breaks soon after it started (a flapping camera) keeps backing off
                # instead of reconnecting in a tight loop; a long healthy one reconnects at once.
                healthy = t_lost - t_first >= cfg.backoff_max_s
                if healthy:
                    delay = cfg.backoff_initial_s
            else:
                failures += 1
            self.last_error = reason
            if cfg.max_retries is not None and failures > cfg.max_retries:
                err = RtspError(f"rtsp: cannot read {self.source}: {reason} (gave up after {cfg.max_retries} "
                                f"retries; open timeout {cfg.open_timeout_s:g} s, read timeout {cfg.read_timeout_s:g} s, "
                                f"first-frame timeout {cfg.first_frame_timeout_s:g} s)")
                log.error("%s", err)
                with self._cond:
                    self._fatal = err
                    self._cond.notify_all()
                return
            if got_frames and healthy:          # a working stream broke: try again at once
                log.warning("rtsp %s: %s; reconnecting now", self.source, reason)
                continue
            tries = "" if cfg.max_retries is None else f"/{cfg.max_retries}"
            log.warning("rtsp %s: %s; retry %d%s in %.1f s", self.source, reason, max(failures, 1), tries, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * cfg.backoff_factor, cfg.backoff_max_s)

    def _connect_and_pump(self, connection: int, t_lost: float | None) -> tuple[float | None, str]:
        """One connection: open, decode until it ends.

        Returns (time.monotonic() of its first frame, or None if it delivered none; why it ended).
        """
        cfg = self.config
        options = {"rtsp_transport": cfg.transport, **{k: str(v) for k, v in cfg.ffmpeg_options.items()}}
        container = None
        got: float | None = None
        phase, t_phase = "open", time.monotonic()
        try:
            container = av.open(cfg.url, options=options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s))
            video = container.streams.video[0] if container.streams.video else None
            if video is None:
                return None, "no video stream in the RTSP session"
            video.codec_context.thread_count = cfg.decoder_threads
            self.connected = True
            deadline = time.monotonic() + cfg.first_frame_timeout_s
            phase = "read"
            for packet in container.demux(video):
                t_phase = time.monotonic()
                if self._stop.is_set():
                    return got, "stopped"
                for frame in packet.decode():
                    t_mono, t_wall = time.monotonic(), time.time()
                    if got is None:
                        got = t_mono
                        if self.t_first_frame is None:
                            self.t_first_frame = t_mono
                        if t_lost is not None:
                            gap = t_mono - self._t_last_frame
                            self.reconnects += 1
                            self.reconnect_events.append({"t_last_frame": self._t_last_frame, "t_lost": t_lost,
                                                          "t_first_frame": t_mono, "gap_s": gap})
                            log.info("rtsp %s: reconnected; %.2f s without frames", self.source, gap)
                    self._publish(frame, t_mono, t_wall, connection)
                if got is None and time.monotonic() > deadline:
                    return None, f"no frame within the first-frame timeout of {cfg.first_frame_timeout_s:g} s"
            return got, "stream ended (server closed the connection)"
        except av.FFmpegError as e:
            # When PyAV's timeout interrupts FFmpeg, the error says "Immediate exit" or "Invalid
            # data": name the timeout that fired instead. FFmpeg's messages quote the URL,
            # password included: mask before anything sees it.
            limit = cfg.open_timeout_s if phase == "open" else cfg.read_timeout_s
            if time.monotonic() - t_phase >= 0.9 * limit or isinstance(e, av.error.ExitError):
                return got, f"no answer within the {phase} timeout of {limit:g} s"
            # strerror, not str(e): the latter repeats the URL, which the message already names.
            return got, mask_url(f"{e.strerror or e} ({type(e).__name__})")
        except (OSError, ValueError, IndexError) as e:
            return got, mask_url(f"{type(e).__name__}: {e}")
        finally:
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError):
                    pass

    def _publish(self, frame, t_mono: float, t_wall: float, connection: int) -> None:
        pts = float(frame.time) if frame.time is not None else None
        self._t_last_frame = t_mono
        with self._cond:
            if self._slot is not None:
                self.drops += 1               # the reader was slower than the camera
            self._slot = (frame, self.frames, t_mono, t_wall, pts, connection)
            self.frames += 1
            self._cond.notify()
