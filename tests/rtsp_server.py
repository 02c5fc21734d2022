#!/usr/bin/python3
"""A real RTSP server for tests: GStreamer's gst-rtsp-server on loopback, H.264 over TCP.

Run with Debian's python3 (it has the GObject bindings; the venv does not):
    /usr/bin/python3 tests/rtsp_server.py --port 8554
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --user admin --password s3cret
Then: rtsp://127.0.0.1:8554/vis (640x480 colour, 20 fps), rtsp://127.0.0.1:8554/ir
(320x256 gray, 10 fps), with --scene DIR /scene_vis and /scene_ir (one still scene, two sizes)
and rtsp://127.0.0.1:8554/stall (a session that opens and never sends
a frame, like a camera that half-recovered). Each client gets its own pipeline (unshared media), so a test's
reconnect starts a fresh stream. Prints "READY <port>" on stdout once listening. SIGTERM or
SIGKILL stops it; it can be restarted on the same port at once.

Needs: apt-get install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-plugins-good
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

MOUNTS = {
    # mount: (width, height, fps, pattern, caps format)
    "/vis": (640, 480, 20, "ball", "I420"),
    "/ir": (320, 256, 10, "smpte", "GRAY8"),
}


def launch_line(width: int, height: int, fps: int, pattern: str, fmt: str) -> str:
    # key-int-max: a keyframe every 0.5 s, so a (re)connecting client decodes within half a second.
    return (f"( videotestsrc is-live=true pattern={pattern} "
            f"! video/x-raw,width={width},height={height},framerate={fps}/1,format={fmt} "
            f"! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, fps // 2)} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")


# --scene DIR: one still scene seen by two cameras of different sizes (DIR/vis.png, DIR/ir.png:
# a VIS picture and the IR picture of the same scene), served as live streams with no
# calibration known to the client (the test of starting without one).
SCENE_MOUNTS = {
    # mount: (file, width, height, fps, caps format)
    "/scene_vis": ("vis.png", 640, 480, 20, "I420"),
    "/scene_ir": ("ir.png", 320, 256, 10, "GRAY8"),
}


def scene_launch_line(path: str, width: int, height: int, fps: int, fmt: str) -> str:
    return (f"( filesrc location={path} ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale "
            f"! video/x-raw,width={width},height={height},framerate={fps}/1,format={fmt} "
            f"! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, fps // 2)} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")


# The encoder runs (so the session can be described and played) but every packet is dropped.
STALL_LAUNCH = ("( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1 "
                "! x264enc tune=zerolatency speed-preset=ultrafast ! identity drop-probability=1.0 "
                "! rtph264pay name=pay0 pt=96 )")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8554, help="TCP port (default 8554)")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    ap.add_argument("--user", default=None, help="require basic auth with this user")
    ap.add_argument("--password", default=None, help="password for --user")
    ap.add_argument("--scene", default=None, metavar="DIR",
                    help="also serve DIR/vis.png at /scene_vis (640x480) and DIR/ir.png at /scene_ir (320x256 gray)")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
    launches = {path: launch_line(*spec) for path, spec in MOUNTS.items()}
    launches["/stall"] = STALL_LAUNCH
    if args.scene:
        for path, (name, *spec) in SCENE_MOUNTS.items():
            launches[path] = scene_launch_line(f"{args.scene}/{name}", *spec)
    for path, launch in launches.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            for perm in (GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT):
                permissions.add_permission_for_role("user", perm, True)
            factory.set_permissions(permissions)
        mounts.add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
