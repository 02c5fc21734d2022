"""Operations HTTP server: Prometheus metrics, a health check and a live view, beside the runner.

    python run_stream.py --http 127.0.0.1:8080       # then open http://127.0.0.1:8080/
    curl -s 127.0.0.1:8080/metrics                   # Prometheus text
    curl -s 127.0.0.1:8080/health                    # {"status": "ok", ...} (200) or 503

Routes: `/` the live view page (pipeline/liveview.html: no CDN, no build step), `/stream.mjpg?view=
fused|vis|ir|smoke` an MJPEG stream, `/frame.jpg?view=...` one JPEG, `/api/status` the page's
JSON, `/metrics`, `/health`.

It runs in the runner's process on its own threads and reads what the runner already has (the
stages' stats messages, runner.snapshot()). Frames come from the fusion stage's `preview`
output: a PUB socket whose sender skips packets beyond http.view_fps before encoding them, so the
pipeline never waits for a viewer; here a thread keeps only the newest packet, and each viewer
gets the newest frame at most view_fps times a second (JPEG-encoded once per frame and view).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import zmq
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from pipeline.codec import CodecError, decode
from pipeline.packet import Packet

log = logging.getLogger("pipeline.ops")

PAGE = Path(__file__).with_name("liveview.html")
VIEWS = ("fused", "vis", "ir", "smoke")
MAX_VIEWERS = 8                  # concurrent MJPEG streams; more get 503 (each costs a thread)
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RECENT_LATENCIES = 200           # per stage, for the page's p50/p99 (same window as the status line)


class OpsError(RuntimeError):
    """The HTTP server cannot start (address taken, bad address); one line."""


# -- health ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    status: str            # ok | degraded | down
    reason: str            # one line naming the stage; "" when ok
    problems: tuple = ()   # every problem found, most upstream first

    @property
    def http_code(self) -> int:
        return 200 if self.status == "ok" else 503

    def to_json(self) -> dict:
        return {"status": self.status, "reason": self.reason, "problems": list(self.problems)}


def evaluate_health(nodes: dict[str, dict], phase: str, now: float, stale_s: float,
                    go_at: float | None, fused_node: str = "fusion") -> Health:
    """Health of a run from runner.snapshot() (nodes in graph order: sources first).

    ok: every stage alive and, if the fusion stage runs here, a fused frame within stale_s.
    down: the run is not streaming (starting, ended) or a stage died and will not be restarted.
    degraded: anything else wrong (a camera without frames or reconnecting, a restart under way,
    no fused frame for stale_s). `now` and every time in `nodes` are time.monotonic() seconds."""
    if phase == "starting":
        late = [n for n, d in nodes.items() if not d["ready"]]
        return Health("down", f"starting: waiting for {', '.join(late) or 'the go signal'}")
    if phase == "ended":
        return Health("down", "run ended")
    down, degraded = [], []
    for name, d in nodes.items():
        if d["restarting"]:
            degraded.append(f"{name}: crashed, restarting (restart {d['restarts'] + 1})")
            continue
        if not d["alive"]:
            if d["exit_code"] == 0 and phase == "stopping":
                continue
            rc = d["exit_code"]
            how = "not started" if rc is None else f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            (degraded if d["exit_code"] == 0 else down).append(f"{name}: process ended ({how})")
            continue
        last = d["last"]
        ref = last.get("last_out") or max(go_at or now, d.get("started_at") or 0.0)
        age = max(0.0, now - ref)
        if d["role"] == "source":
            connected = (last.get("stage") or {}).get("connected")
            if connected is False:
                degraded.append(f"{name}: no frame for {age:.1f} s (reconnecting)")
            elif age > stale_s:
                degraded.append(f"{name}: no frame for {age:.1f} s")
        elif name == fused_node and age > stale_s:
            degraded.append(f"{name}: no fused frame for {age:.1f} s")
    if phase == "stopping":
        degraded.insert(0, "stopping")
    problems = tuple(down + degraded)
    if down:
        return Health("down", down[0], problems)
    if degraded:
        return Health("degraded", degraded[0], problems)
    return Health("ok", "", ())


# -- the newest fused frame ------------------------------------------------------------------------
class LiveFeed:
    """Subscribes to the fusion stage's preview output and keeps only the newest packet."""

    def __init__(self, endpoint: str | None):
        self.endpoint = endpoint
        self.count = 0                   # packets received
        self.packet: Packet | None = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        if endpoint:
            self._thread = threading.Thread(target=self._run, name="ops-feed", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 2)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.endpoint.split(":", 1)[1])      # pub+bind:ipc://... -> ipc://...
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                try:
                    pkt = decode(sock.recv_multipart(copy=False))
                except CodecError as e:
                    log.warning("ops: skipped a corrupt preview message (%s)", e)
                    continue
                if pkt.is_eos:
                    continue
                self.put(pkt)
        finally:
            sock.close(0)
            ctx.term()

    def put(self, pkt: Packet) -> None:
        with self._cv:
            self.packet = pkt
            self.count += 1
            self._cv.notify_all()

    def newer_than(self, count: int, timeout_s: float) -> tuple[int, Packet | None]:
        """(count, packet) as soon as a packet newer than `count` is there, else (count, None)."""
        with self._cv:
            self._cv.wait_for(lambda: self.count > count or self._stop.is_set(), timeout_s)
            if self.count > count and self.packet is not None:
                return self.count, self.packet
            return count, None

    def close(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


# -- rendering --------------------------------------------------------------------------------------
def transmission_prior(vis_bgr: np.ndarray, patch: int = 15, omega: float = 0.95) -> np.ndarray:
    """Smoke transmission t (HxW float32, 1 = clear air) by the dark channel prior (He et al.
    2009): t = 1 - omega * dark(I / A), A the mean colour of the 0.1 % haziest pixels. Used for the
    smoke view when the fused packet carries no `smoke` buffer of its own."""
    img = vis_bgr.astype(np.float32) / 255.0
    if img.ndim == 2:
        img = img[..., None]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(img.min(axis=2), kernel)
    n = max(1, dark.size // 1000)
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    a = np.maximum(img.reshape(-1, img.shape[2])[idx].mean(axis=0), 1e-3)
    dark_norm = cv2.erode((img / a).min(axis=2), kernel)
    return np.clip(1.0 - omega * dark_norm, 0.0, 1.0)


def _bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def render(pkt: Packet, view: str) -> np.ndarray:
    """The BGR image of one view of a fused packet: fused | vis | ir | smoke (smoke density over
    the VIS frame: the packet's `smoke` buffer, transmission 0..1 or 0..255, else the prior)."""
    b = pkt.buffers
    if view == "smoke":
        vis = b.get("vis")
        if vis is None:
            raise KeyError("vis")
        t = b.get("smoke")
        if t is None:
            t = transmission_prior(vis)
        else:
            t = t.astype(np.float32) / (255.0 if t.dtype == np.uint8 else 1.0)
            t = t.reshape(t.shape[:2])
            if t.shape != vis.shape[:2]:
                t = cv2.resize(t, (vis.shape[1], vis.shape[0]))
        density = np.clip((1.0 - t) * 255.0, 0, 255).astype(np.uint8)
        heat = cv2.applyColorMap(density, cv2.COLORMAP_INFERNO)
        gray = _bgr(cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY) if vis.ndim == 3 else vis)
        return cv2.addWeighted(gray, 0.4, heat, 0.6, 0.0)
    name = "fused" if view == "fused" else view
    return _bgr(b[name])


# -- metrics ----------------------------------------------------------------------------------------
def _proc_rss_fds(pid: int) -> tuple[float | None, int | None]:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        rss = float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        rss = None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    return rss, fds


class _RunCollector:
    """Builds every smokefusion_* family at scrape time from the runner's snapshot."""

    def __init__(self, ops: "OpsServer"):
        self.ops = ops

    def collect(self):
        ops = self.ops
        snap = ops.runner.snapshot()
        fam = {
            "frames": CounterMetricFamily("smokefusion_frames", "Frames out of each stage (a sink: frames consumed)", labels=["stage"]),
            "drops": CounterMetricFamily("smokefusion_drops", "Frames dropped at each stage (queues, sources, senders)", labels=["stage"]),
            "corrupt": CounterMetricFamily("smokefusion_corrupt_messages", "Corrupt messages skipped", labels=["stage"]),
            "rejected": CounterMetricFamily("smokefusion_auth_rejected", "Peers refused by CURVE authentication", labels=["stage"]),
            "restarts": CounterMetricFamily("smokefusion_restarts", "Restarts of a crashed stage", labels=["stage"]),
            "up": GaugeMetricFamily("smokefusion_stage_up", "1 while the stage's process or thread runs", labels=["stage"]),
            "fps": GaugeMetricFamily("smokefusion_stage_fps", "Outputs per second over the last stats interval", labels=["stage"]),
            "depth": GaugeMetricFamily("smokefusion_queue_depth", "Packets waiting in the stage's receive queues", labels=["stage"]),
            "reconnects": CounterMetricFamily("smokefusion_rtsp_reconnects", "RTSP reconnects after a lost stream", labels=["stage", "source"]),
            "connected": GaugeMetricFamily("smokefusion_source_connected", "1 while the RTSP camera is connected", labels=["stage", "source"]),
            "adopt": CounterMetricFamily("smokefusion_calibration_adoptions", "Geometries adopted by online refinement", labels=["stage"]),
            "rss": GaugeMetricFamily("smokefusion_process_resident_memory_bytes", "Resident memory of each stage's process", labels=["stage"]),
            "fds": GaugeMetricFamily("smokefusion_process_open_fds", "Open file descriptors of each stage's process", labels=["stage"]),
        }
        pids = {"runner": os.getpid()}
        for name, d in snap.items():
            tot, last = d["totals"], d["last"]
            st = last.get("stage") or {}
            fam["frames"].add_metric([name], tot["out"])
            fam["drops"].add_metric([name], tot["drops"])
            fam["corrupt"].add_metric([name], tot["corrupt"])
            fam["rejected"].add_metric([name], tot["auth_rejected"])
            fam["restarts"].add_metric([name], d["restarts"])
            fam["up"].add_metric([name], 1.0 if d["alive"] else 0.0)
            fam["fps"].add_metric([name], float(last.get("fps", 0.0)))
            fam["depth"].add_metric([name], float(last.get("depth", 0)))
            url = ops.sources.get(name, "")
            if url.startswith(("rtsp://", "rtsps://")):
                # Reconnects of earlier incarnations are kept by the runner only as restarts.
                fam["reconnects"].add_metric([name, url], float(st.get("reconnects", 0)))
                fam["connected"].add_metric([name, url], 1.0 if st.get("connected") else 0.0)
            if name.split("@")[0] == "registration":
                fam["adopt"].add_metric([name], float(st.get("refine_adopted", 0)))
            if d["pid"] and d["alive"]:
                pids[name] = d["pid"]
        for name, pid in pids.items():
            rss, fds = _proc_rss_fds(pid)
            if rss is not None:
                fam["rss"].add_metric([name], rss)
            if fds is not None:
                fam["fds"].add_metric([name], fds)
        yield from fam.values()
        health = ops.health()
        g = GaugeMetricFamily("smokefusion_health_ok", "1 while /health says ok")
        g.add_metric([], 1.0 if health.status == "ok" else 0.0)
        yield g
        yield from ops.frame_metrics()


# -- the server ------------------------------------------------------------------------------------
class OpsServer:
    """The HTTP server. `runner` is a pipeline.runner.Runner (snapshot(), phase, go_at, views);
    call on_event() with every control message (the Runner's on_event hook)."""

    def __init__(self, listen: str, runner: Any, preview_endpoint: str | None, *, stale_s: float = 5.0,
                 view_fps: float = 10.0, jpeg_quality: int = 80, sources: dict[str, str] | None = None,
                 calibrations: dict[str, tuple[str, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.listen, self.runner = listen, runner
        self.stale_s, self.view_fps, self.jpeg_quality = stale_s, view_fps, jpeg_quality
        self.sources = sources or {}              # node -> masked source URL
        self.calibrations = calibrations or {}    # stream -> (file calibration id, its date as epoch s)
        self.clock, self.wall = clock, wall
        self.feed = LiveFeed(preview_endpoint)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)      # the runner's own process_* metrics
        self.latency = Histogram("smokefusion_latency_seconds", "Capture to fused-frame latency",
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_RunCollector(self))
        self._recent: dict[str, collections.deque] = {}
        self._lock = threading.Lock()
        self._jpeg: dict[str, tuple[int, bytes]] = {}
        self._cal_seen: dict[tuple[str, str], float] = {}   # (stream, id) -> wall time first seen
        self._viewers = 0
        self.closing = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> str:
        """Listen and serve on a thread. Returns the base URL."""
        host, _, port = self.listen.rpartition(":")
        try:
            self.httpd = _Server((host.strip("[]"), int(port)), _Handler)
        except (OSError, ValueError) as e:
            raise OpsError(f"http.listen {self.listen}: cannot listen ({getattr(e, 'strerror', None) or e})") from None
        self.httpd.ops = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ops-http", daemon=True)
        self._thread.start()
        h, p = self.httpd.server_address[:2]
        return f"http://{h}:{p}/"

    def close(self) -> None:
        self.closing.set()
        self.feed.close()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # -- inputs --
    def on_event(self, msg: dict) -> None:
        """A control message from a stage (the runner's thread): latency samples."""
        if msg.get("type") != "stats":
            return
        name, lat = msg.get("node", ""), msg.get("lat_ms") or []
        with self._lock:
            dq = self._recent.setdefault(name, collections.deque(maxlen=RECENT_LATENCIES))
            dq.extend(lat)
        if name == "fusion":
            for ms in lat:
                self.latency.observe(ms / 1000.0)

    # -- outputs --
    def health(self) -> Health:
        return evaluate_health(self.runner.snapshot(), self.runner.phase, self.clock(), self.stale_s,
                               self.runner.go_at)

    def frame_metrics(self):
        pkt = self.feed.packet
        cal_id = GaugeMetricFamily("smokefusion_calibration_info", "The calibration in force (value 1)",
                                   labels=["stream", "calibration_id"])
        cal_age = GaugeMetricFamily("smokefusion_calibration_age_seconds",
                                    "Seconds since the calibration in force was made (file date) or adopted (online refinement)",
                                    labels=["stream"])
        smoke = GaugeMetricFamily("smokefusion_smoke_coverage", "Fraction of the frame under smoke (from the model)",
                                  labels=["stream"])
        mean_t = GaugeMetricFamily("smokefusion_smoke_mean_transmission", "Mean smoke transmission t (1 = clear air)",
                                   labels=["stream"])
        if pkt is not None:
            cid = pkt.meta.get("calibration_id")
            if cid:
                cal_id.add_metric([pkt.stream, cid], 1.0)
                cal_age.add_metric([pkt.stream], self.calibration_age(pkt.stream, cid))
            sm = pkt.meta.get("smoke")
            if isinstance(sm, dict) and isinstance(sm.get("coverage"), (int, float)):
                smoke.add_metric([pkt.stream], float(sm["coverage"]))
                if isinstance(sm.get("mean_t"), (int, float)):
                    mean_t.add_metric([pkt.stream], float(sm["mean_t"]))
        return [cal_id, cal_age, smoke, mean_t]

    def calibration_age(self, stream: str, cid: str) -> float:
        now = self.wall()
        file_id, file_t = self.calibrations.get(stream, ("", 0.0))
        if cid == file_id:
            return max(0.0, now - file_t)
        return max(0.0, now - self._cal_seen.setdefault((stream, cid), now))

    def status(self) -> dict:
        """What the live view page shows: health, and per stage fps, latency, drops, restarts."""
        from pipeline.telemetry import percentiles
        snap = self.runner.snapshot()
        stages = []
        for name, d in snap.items():
            with self._lock:
                lat = list(self._recent.get(name, ()))
            p50, p99 = percentiles(lat) if d["role"] != "source" else (None, None)
            stages.append({"name": name, "alive": d["alive"], "fps": float(d["last"].get("fps", 0.0)),
                           "latency_p50_ms": p50, "latency_p99_ms": p99, "drops": d["totals"]["drops"],
                           "out": d["totals"]["out"], "restarts": d["restarts"], "pid": d["pid"]})
        pkt = self.feed.packet
        frame = None if pkt is None else {"stream": pkt.stream, "seq": pkt.seq, "fuser": pkt.meta.get("fuser"),
                                          "smoke": pkt.meta.get("smoke"), "views": [v for v in VIEWS if _has_view(pkt, v)]}
        return {"health": self.health().to_json(), "stages": stages, "view_fps": self.view_fps,
                "frame": frame, "preview": self.feed.endpoint is not None}

    def jpeg(self, view: str, count: int, pkt: Packet) -> bytes:
        """The JPEG of one view of the packet numbered `count`, encoded once for every viewer."""
        with self._lock:
            hit = self._jpeg.get(view)
            if hit is not None and hit[0] == count:
                return hit[1]
        ok, buf = cv2.imencode(".jpg", render(pkt, view), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise OpsError(f"JPEG encoding of view {view} failed")
        data = buf.tobytes()
        with self._lock:
            self._jpeg[view] = (count, data)
        return data

    def take_viewer(self) -> bool:
        with self._lock:
            if self._viewers >= MAX_VIEWERS:
                return False
            self._viewers += 1
            return True

    def release_viewer(self) -> None:
        with self._lock:
            self._viewers -= 1


def _has_view(pkt: Packet, view: str) -> bool:
    return {"fused": "fused", "vis": "vis", "ir": "ir", "smoke": "vis"}[view] in pkt.buffers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    ops: OpsServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:   # access log: debug only
        log.debug("http %s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: dict) -> None:
        self._send(code, json.dumps(obj, default=str).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        ops = self.server.ops
        url = urlparse(self.path)
        view = parse_qs(url.query).get("view", ["fused"])[0]
        try:
            if url.path == "/metrics":
                self._send(200, generate_latest(ops.registry), CONTENT_TYPE_LATEST)
            elif url.path == "/health":
                h = ops.health()
                self._json(h.http_code, h.to_json())
            elif url.path == "/api/status":
                self._json(200, ops.status())
            elif url.path == "/":
                self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif url.path in ("/stream.mjpg", "/frame.jpg"):
                if view not in VIEWS:
                    self._json(400, {"error": f"view {view!r}: expected one of {', '.join(VIEWS)}"})
                elif url.path == "/frame.jpg":
                    self._frame(view)
                else:
                    self._stream(view)
            else:
                self._json(404, {"error": f"{url.path}: not found (try /, /metrics, /health)"})
        except (BrokenPipeError, ConnectionResetError):
            pass      # the client went away

    def _frame(self, view: str) -> None:
        ops = self.server.ops
        count, pkt = ops.feed.newer_than(0, 2.0)
        if pkt is None or not _has_view(pkt, view):
            self._json(503, {"error": "no fused frame yet" if pkt is None else f"view {view}: not in the fused packets"})
            return
        self._send(200, ops.jpeg(view, count, pkt), "image/jpeg")

    def _stream(self, view: str) -> None:
        """MJPEG: the newest frame, at most view_fps a second, until the client leaves."""
        ops = self.server.ops
        if not ops.take_viewer():
            self._json(503, {"error": f"too many live viewers (at most {MAX_VIEWERS})"})
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            count, next_at = 0, 0.0
            while not ops.closing.is_set():
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)     # the cap: frames that come meanwhile are skipped, not queued
                count, pkt = ops.feed.newer_than(count, 0.5)
                if pkt is None or not _has_view(pkt, view):
                    continue
                next_at = time.monotonic() + 1.0 / ops.view_fps
                data = ops.jpeg(view, count, pkt)
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                self.wfile.flush()
        finally:
            ops.release_viewer()


def start_for_run(gc: Any, specs: list, runner: Any, sources: dict[str, str],
                  calibrations: dict[str, tuple[str, float]]) -> OpsServer:
    """The ops server of one run_stream.py run (gc: pipeline.graph.GraphConfig), listening on
    http.listen and fed by the runner's control messages. `sources`: node -> its URL (masked);
    `calibrations`: stream -> (calibration id, its date as epoch seconds). Raises OpsError if it
    cannot listen."""
    preview = next((o["endpoint"] for s in specs for o in s.outputs if o["name"] == "preview"), None)
    ops = OpsServer(gc.http.listen, runner, preview, stale_s=gc.http.stale_s, view_fps=gc.http.view_fps,
                    jpeg_quality=gc.http.jpeg_quality, sources=sources, calibrations=calibrations)
    chained = runner.on_event

    def on_event(msg: dict) -> None:
        ops.on_event(msg)
        if chained is not None:
            chained(msg)

    runner.on_event = on_event
    url = ops.start()
    log.info("ops: live view %s, metrics %smetrics, health %shealth", url, url, url)
    return ops
