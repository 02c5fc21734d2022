"""What every capture source shares: its error type, the modality check and the two clocks.

A source turns some medium (a camera, a file, a folder, a generator) into `Packet(kind="frame")`
objects. Each packet carries two capture times taken together (`time.monotonic()` for latency and
pairing inside one host, `time.time()` for humans and other hosts) and the source's own
presentation timestamp `pts` in seconds.

Clocks, by source kind (also written into `meta["clock"]`):
- "capture": live sources (RTSP, paced synthetic). t_mono/t_wall are when the frame was captured
  (decoded, for RTSP) on this host.
- "media": file sources and unpaced synthetic. t_mono/t_wall are the media time mapped onto the
  clock at start(): t_mono = t_mono_at_start + (pts - first_pts). Two file sources started
  together therefore pair by timestamp even when read as fast as possible.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

MODALITIES = ("vis", "ir")


class CaptureError(RuntimeError):
    """A source cannot deliver frames (bad config, missing/corrupt file, unreachable camera).

    The message is one line and names the source (password masked) and what was expected.
    """


class FrameSource:
    """What every capture source declares (pipeline.stage.Source): no inputs, one output of frames.
    A subclass sets Config and kind ("synthetic", "rtsp", "file", "folder")."""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("frames",)

    @staticmethod
    def is_live(config) -> bool:
        """Live sources drop the oldest frame when late; files paced by their timestamps
        (`realtime`) too; others are lossless."""
        return bool(getattr(config, "realtime", False))

    def _started(self, clock: "MediaClock | None") -> MediaClock:
        """The media clock start() made; CaptureError naming the source when read() came first."""
        if clock is None:
            raise CaptureError(f"{type(self).__name__}: read() before start()")
        return clock


def check_modality(modality: str, where: str) -> str:
    """Return `modality` if it is "vis" or "ir", else raise CaptureError naming `where`."""
    if modality not in MODALITIES:
        raise CaptureError(f"{where}: modality must be one of {MODALITIES}, got {modality!r}")
    return modality


@dataclass(frozen=True)
class HostClock:
    """The host clocks a source reads and waits on. Tests pass a fake one (time that moves only
    when the source sleeps), so no test depends on how busy the machine is."""
    # looked up at each call, so a test that replaces time.time (a wall-clock step) reaches every source
    mono: Callable[[], float] = lambda: time.monotonic()
    wall: Callable[[], float] = lambda: time.time()
    sleep: Callable[[float], None] = lambda s: time.sleep(s)


SYSTEM_CLOCK = HostClock()


@dataclass
class MediaClock:
    """Maps media time (seconds, from the first frame) onto the host clocks at start().

    Used by file sources and unpaced synthetic; see the module docstring for why.
    """

    mono0: float
    wall0: float
    host: HostClock = SYSTEM_CLOCK

    @classmethod
    def starting_at(cls, origin_mono: float | None, host: HostClock = SYSTEM_CLOCK) -> "MediaClock":
        """Media time 0 at `origin_mono` (a time.monotonic() value, shared by processes on one host),
        or now if None. Giving a VIS and an IR source the same origin makes their timestamps agree
        exactly, however far apart their start() calls were."""
        m, w = host.mono(), host.wall()
        origin = m if origin_mono is None else float(origin_mono)
        return cls(mono0=origin, wall0=w - (m - origin), host=host)

    def stamp(self, media_s: float, live: bool = False) -> tuple[float, float]:
        """(t_mono, t_wall) of a frame `media_s` seconds after the first one. live: the frame is
        being captured now, so t_wall is read from the wall clock (back-dated to t_mono) and follows
        it when it is stepped; otherwise it is the first frame's wall time plus media_s."""
        t_mono = self.mono0 + media_s
        if live:
            return t_mono, self.host.wall() - (self.host.mono() - t_mono)
        return t_mono, self.wall0 + media_s

    def wait_until(self, media_s: float, timeout_s: float) -> bool:
        """Sleep until `media_s` is due, at most `timeout_s`. True if it is due now."""
        delay = self.mono0 + media_s - self.host.mono()
        if delay <= 0:
            return True
        self.host.sleep(min(delay, max(timeout_s, 0.0)))
        return delay <= timeout_s
