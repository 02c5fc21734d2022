"""Telemetry: per-stage counters sent to the runner, the live status line, the exit summary.

Each worker sends small JSON messages on the control channel (never packets):
    {"node": str, "type": "ready"|"stats"|"limit"|"error"|"done", ...}
A "stats" message carries cumulative counters plus the capture->output latency samples (ms)
taken since the previous message. Telemetry failures only warn; they never stop a stage.
"""
from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

import numpy as np

LATENCY_KEEP = 100_000  # latency samples kept for the summary percentiles (per node): 0.8 MB each


@dataclass
class NodeStats:
    """Worker-side counters of one node."""
    name: str
    packets_in: int = 0
    packets_out: int = 0
    started: float = field(default_factory=time.monotonic)
    _lat_pending: list[float] = field(default_factory=list)

    first_out: float | None = None
    last_out: float | None = None

    def count_out(self, t_mono_capture: float, clock: str = "capture") -> None:
        """One output. Latency is sampled only for capture-clock packets: a file read faster than
        real time carries media time mapped onto the clock, which says nothing about delay."""
        self.packets_out += 1
        self.last_out = time.monotonic()
        if self.first_out is None:
            self.first_out = self.last_out
        if clock != "media":
            self._lat_pending.append(round((self.last_out - t_mono_capture) * 1000.0, 2))

    _fps_mark: tuple[float, int] | None = None

    def fps(self) -> float:
        """Outputs per second since the previous call (the worker's own clock, no aliasing)."""
        now = time.monotonic()
        mark, self._fps_mark = self._fps_mark, (now, self.packets_out)
        if mark is None or now <= mark[0]:
            return 0.0
        return (self.packets_out - mark[1]) / (now - mark[0])

    def message(self, extra: dict) -> dict:
        lat, self._lat_pending = self._lat_pending[-2000:], []
        return {"node": self.name, "type": "stats", "in": self.packets_in, "out": self.packets_out,
                "uptime_s": round(time.monotonic() - self.started, 3), "lat_ms": lat,
                "first_out": self.first_out, "last_out": self.last_out, "fps": round(self.fps(), 2), **extra}


@dataclass
class NodeView:
    """Runner-side view of one node, built from its stats messages."""
    name: str
    last: dict = field(default_factory=dict)
    # 8-byte doubles: a list of Python floats costs ~32 bytes a sample, which the 60-minute soak
    # saw as the runner's RSS growing 7 MB (every node's samples, up to LATENCY_KEEP each)
    latencies: array = field(default_factory=lambda: array("d"))
    fps: float = 0.0
    restarts: int = 0
    # Counters of earlier incarnations of a restarted node, so totals never go backwards.
    carried: dict = field(default_factory=lambda: {"in": 0, "out": 0, "drops": 0, "corrupt": 0,
                                                   "auth_rejected": 0, "files": []})

    def carry(self) -> None:
        """The node is being restarted: fold its counters into `carried`, start afresh."""
        m, c = self.last, self.carried
        for key in ("in", "out", "corrupt", "auth_rejected"):
            c[key] += int(m.get(key, 0))
        c["drops"] += self._own_drops()
        c["files"] += [f for f in (m.get("stage") or {}).get("files", []) if f not in c["files"]]
        self.last = {}
        self.restarts += 1

    def total(self, key: str) -> int:
        """A counter ("in", "out", "corrupt", "auth_rejected") summed over every incarnation."""
        return self.carried[key] + int(self.last.get(key, 0))

    def files(self) -> list[str]:
        """Every file this node wrote, earlier incarnations included."""
        own = (self.last.get("stage") or {}).get("files", [])
        return self.carried["files"] + [f for f in own if f not in self.carried["files"]]

    def update(self, msg: dict) -> None:
        self.last = msg
        self.latencies.extend(msg.get("lat_ms", []))
        if len(self.latencies) > LATENCY_KEEP:
            del self.latencies[: len(self.latencies) - LATENCY_KEEP]

    def refresh_fps(self) -> None:
        self.fps = float(self.last.get("fps", 0.0))

    def _own_drops(self) -> int:
        m = self.last
        return int(m.get("drops_in", 0)) + int(m.get("drops_out", 0)) + int(m.get("drops_stage", 0))

    @property
    def drops(self) -> int:
        return self.carried["drops"] + self._own_drops()

    def avg_fps(self) -> float:
        """Mean output rate between this node's first and last output (its own clock)."""
        m = self.last
        out, first, last = int(m.get("out", 0)), m.get("first_out"), m.get("last_out")
        if out < 2 or first is None or last is None or last <= first:
            return 0.0
        return (out - 1) / (last - first)


def percentiles(samples: list[float]) -> tuple[float | None, float | None]:
    if not samples:
        return None, None
    a = np.asarray(samples, dtype=np.float64)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}ms"


def status_line(elapsed_s: float, views: dict[str, NodeView], latency_node: str) -> str:
    """One line: fps per stage, latency p50/p99 capture->fused, drops, queue depth."""
    parts = []
    for name, v in views.items():
        parts.append(f"{name} {v.fps:4.1f}fps")
    lat = views.get(latency_node)
    p50, p99 = percentiles(lat.latencies[-200:]) if lat else (None, None)
    drops = sum(v.drops for v in views.values())
    depth = sum(int(v.last.get("depth", 0)) for v in views.values())
    parts.append(f"lat p50 {_ms(p50)} p99 {_ms(p99)}")
    parts.append(f"drops {drops}")
    parts.append(f"queued {depth}")
    # A stage that is not yet doing its work says why (registration: "calibrating: ...").
    parts += [f"{name}: {v.last['stage']['waiting']}" for name, v in views.items()
              if isinstance(v.last.get("stage"), dict) and v.last["stage"].get("waiting")]
    return f"[{elapsed_s:6.1f}s] " + " | ".join(parts)


def summary_table(views: dict[str, NodeView], latency_node: str, elapsed_s: float) -> str:
    """Multi-line table printed at exit."""
    rows = [("stage", "in", "out", "fps", "drops", "corrupt", "notes")]
    for name, v in views.items():
        m = v.last
        notes = []
        st = m.get("stage") or {}
        for key in ("fuser", "choice", "mean_batch", "pairs", "unmatched_vis", "unmatched_ir", "skew_ms_mean_abs", "skew_ms_max_abs",
                    "reconnects", "drops", "frames_written", "files"):
            if key in st and st[key] not in (None, [], ""):
                val = st[key]
                if key == "files":
                    files = v.files()     # earlier incarnations' segments too
                    val = ", ".join(map(str, files[:3])) + (" ..." if len(files) > 3 else "")
                notes.append(f"{key}={val}")
        if v.restarts:
            notes.append(f"restarts={v.restarts}")
        if v.total("auth_rejected"):
            notes.append(f"auth_rejected={v.total('auth_rejected')}")
        rows.append((name, str(v.total("in")), str(v.total("out")), f"{v.avg_fps():.1f}",
                     str(v.drops), str(v.total("corrupt")), " ".join(notes)))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6] for r in rows]
    lat = views.get(latency_node)
    p50, p99 = percentiles(lat.latencies) if lat else (None, None)
    n = len(lat.latencies) if lat else 0
    lines.append(f"latency capture->{latency_node} output: p50 {_ms(p50)} p99 {_ms(p99)} over {n} frames; "
                 f"run time {elapsed_s:.1f}s")
    return "\n".join(lines)
