"""A pytest fixture that runs tests/rtsp_server.py (a real GStreamer RTSP server) on loopback.

Use from any test directory's conftest.py:
    sys.path.append(str(Path(__file__).resolve().parents[1]))   # tests/ (appended: never shadows a package)
    from rtsp_fixture import rtsp_server                              # noqa: F401  (registers the fixture)

Then, in a test marked @pytest.mark.rtsp:
    def test_x(rtsp_server):
        url = rtsp_server.url("/vis")                 # rtsp://127.0.0.1:<port>/vis
        rtsp_server.kill(); rtsp_server.start()       # outage on the same port

The fixture skips (with the reason) when Debian's /usr/bin/python3 cannot import
gi + GstRtspServer. The server runs with basic auth (user "admin", password RTSP_PASSWORD) so
tests also exercise credentials in URLs; url() includes them unless auth=False.
"""
from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.transport import free_loopback_port

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
RTSP_USER = "admin"
RTSP_PASSWORD = "Sekr1t-pw"


@functools.lru_cache(maxsize=1)
def rtsp_unavailable_reason() -> str | None:
    """None if the RTSP test server can run here, else why not (for pytest.skip)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found (the RTSP test server needs Debian's python3 with GObject bindings)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc'), 'x264enc'; "
             "assert Gst.ElementFactory.find('rtph264pay'), 'rtph264pay'")
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {SYSTEM_PYTHON}: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return (f"{SYSTEM_PYTHON} cannot import gi/GstRtspServer or x264enc ({last}); install "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-plugins-good python3-gi")
    return None


class RtspTestServer:
    """tests/rtsp_server.py as a child process on a fixed loopback port: start, kill, start again."""

    def __init__(self, port: int, auth: bool = True, scene: Path | None = None) -> None:
        self.port = port
        self.auth = auth
        self.scene = scene       # a folder with vis.png and ir.png: also serve /scene_vis, /scene_ir
        self.proc: subprocess.Popen | None = None

    def url(self, mount: str = "/vis", auth: bool | None = None) -> str:
        with_auth = self.auth if auth is None else auth
        cred = f"{RTSP_USER}:{RTSP_PASSWORD}@" if with_auth else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{mount}"

    def start(self, timeout_s: float = 15.0) -> float:
        """Start the server and wait until it listens. Returns the monotonic time it became ready."""
        if self.proc is not None:
            raise RuntimeError("RtspTestServer already running")
        cmd = [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port)]
        if self.auth:
            cmd += ["--user", RTSP_USER, "--password", RTSP_PASSWORD]
        if self.scene is not None:
            cmd += ["--scene", str(self.scene)]
        deadline = time.monotonic() + timeout_s
        while True:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = self._readline(deadline)
            if line.startswith("READY"):
                return time.monotonic()
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            if time.monotonic() > deadline:
                raise RuntimeError(f"rtsp_server.py did not start on port {self.port}: {line!r} {err[-300:]}")
            time.sleep(0.2)     # port still held by the previous instance: try again

    def _readline(self, deadline: float) -> str:
        # The server prints READY within ~1 s; select() keeps a broken server from hanging the test.
        import select
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                return self.proc.stdout.readline().strip()
            if self.proc.poll() is not None:
                return ""
        return ""

    def kill(self) -> None:
        """SIGKILL: the camera vanishes without closing anything, like a power cut."""
        if self.proc is None:
            return
        self.proc.kill()
        try:
            self.proc.wait(5)
        finally:
            for pipe in (self.proc.stdout, self.proc.stderr):
                pipe.close()
            self.proc = None


@pytest.fixture
def rtsp_server():
    """A running RtspTestServer (auth on) on a free loopback port; killed after the test."""
    reason = rtsp_unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = RtspTestServer(free_loopback_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def rtsp_scene_server(tmp_path_factory):
    """Like rtsp_server, also serving one clear synthetic street seen by a VIS camera (640x480,
    /scene_vis) and an IR camera of another size (320x256, /scene_ir): a rig with no calibration."""
    reason = rtsp_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import cv2
    from common.synthetic_scene import render_pair
    scene = tmp_path_factory.mktemp("scene")
    vis, ir = render_pair(2.0, seed=0, smoke=0.0)
    cv2.imwrite(str(scene / "vis.png"), vis)
    cv2.imwrite(str(scene / "ir.png"), ir)
    server = RtspTestServer(free_loopback_port(), scene=scene)
    server.start()
    try:
        yield server
    finally:
        server.kill()
