"""16-bit IR input: raw Y16 frames (the format of a UVC thermal camera; a device's options), 16-bit
PNG and TIFF folders, 16-bit gray video files. Each delivers (H, W) uint16 counts, exactly."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stages.capture import CaptureError, open_source
from stages.capture.y16 import Y16Config, open_args

REPO = Path(__file__).resolve().parents[2]
W, H = 64, 48


def frames16(n=6):
    """n distinct frames using the whole 16-bit range (so a byte-order or depth slip shows)."""
    base = np.arange(W * H, dtype=np.uint32).reshape(H, W) * 21
    return [((base + 9973 * k) % 65536).astype(np.uint16) for k in range(n)]


def read_all(src):
    src.start()
    out = []
    while (p := src.read(1.0)) is not None and not p.is_eos:
        out.append(p)
    src.stop()
    return out


@pytest.mark.parametrize("byteorder, pixel_format", [("<", "gray16le"), (">", "gray16be")])
def test_raw_y16_file_gives_the_counts_back_in_order(tmp_path, byteorder, pixel_format):
    path = tmp_path / "cam.y16"
    frames = frames16()
    path.write_bytes(b"".join(f.astype(byteorder + "u2").tobytes() for f in frames))
    pkts = read_all(open_source(str(path), modality="ir", width=W, height=H, fps=10, pixel_format=pixel_format))
    assert len(pkts) == len(frames)
    for p, f in zip(pkts, frames):
        assert p.buffers["ir"].dtype == np.uint16 and np.array_equal(p.buffers["ir"], f)
    assert np.diff([p.t_mono for p in pkts]) == pytest.approx(0.1)
    assert [p.seq for p in pkts] == list(range(len(frames)))


def test_raw_y16_file_of_the_wrong_size_or_without_a_size_is_a_one_line_error(tmp_path):
    path = tmp_path / "cam.y16"
    path.write_bytes(b"\0" * (W * H * 2 * 3 + 10))
    with pytest.raises(CaptureError, match=r"cam.y16: 18442 bytes is not a whole number of 64x48 gray16le frames \(6144 bytes each\)"):
        open_source(str(path), modality="ir", width=W, height=H, fps=10).start()
    with pytest.raises(CaptureError, match="a raw file needs width, height and fps"):
        open_source(str(path), modality="ir")
    with pytest.raises(CaptureError, match="modality must be 'ir'"):
        open_source(str(path), modality="vis", width=W, height=H, fps=10)


def test_a_uvc_device_is_opened_with_v4l2_y16_options_and_a_missing_one_names_itself():
    cfg = Y16Config(path="/dev/video2", width=160, height=120, fps=9)
    assert open_args(cfg) == ("v4l2", {"pixel_format": "gray16le", "video_size": "160x120", "framerate": "9"})
    assert open_args(Y16Config(path="/dev/video0")) == ("v4l2", {"pixel_format": "gray16le"})
    missing = "/dev/video97"
    assert not os.path.exists(missing)
    with pytest.raises(CaptureError, match=r"^y16: cannot open /dev/video97 as a v4l2 device offering gray16le 160x120 at 9 fps"):
        open_source(missing, modality="ir", width=160, height=120, fps=9).start()


@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_16_bit_image_folders_keep_their_counts(tmp_path, ext):
    frames = frames16(4)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(tmp_path / f"ir_{i:03d}.{ext}"), f)
    pkts = read_all(open_source(str(tmp_path), modality="ir", fps=10))
    assert [p.buffers["ir"].dtype for p in pkts] == [np.uint16] * 4
    assert all(np.array_equal(p.buffers["ir"], f) for p, f in zip(pkts, frames))


def test_an_8_bit_ir_folder_is_still_8_bit_gray(tmp_path):
    img = np.dstack([np.full((H, W), v, np.uint8) for v in (10, 100, 200)])
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (p,) = read_all(open_source(str(tmp_path), modality="ir", fps=10))
    assert p.buffers["ir"].dtype == np.uint8 and p.buffers["ir"].shape == (H, W)
    assert int(p.buffers["ir"][0, 0]) == int(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[0, 0])


def test_a_16_bit_gray_video_file_keeps_its_counts(tmp_path):
    path = tmp_path / "ir.mkv"
    frames = frames16(5)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "gray16le"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="gray16le")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    pkts = read_all(open_source(str(path), modality="ir"))
    assert len(pkts) == 5 and all(np.array_equal(p.buffers["ir"], f) for p, f in zip(pkts, frames))


def test_raw_y16_counts_go_through_the_pipeline_to_temperatures_on_the_feed(tmp_path):
    """A raw Y16 file of the radiometric demo camera + a VIS video file, in processes: the counts
    cross the wire as uint16 and come out as temperatures."""
    from feed_listener import FeedListener
    from common.synthetic_scene import render_vis
    from thermal.scene import PLANCK, fire_truth, render_ir_counts
    n = 20
    (tmp_path / "ir.y16").write_bytes(b"".join(render_ir_counts(k / 10, smoke=0.0, frame=k).tobytes() for k in range(n)))
    with av.open(str(tmp_path / "vis.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 640, 480, "bgr0"
        for k in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(render_vis(k / 10, smoke=0.0), format="bgr24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    feed_ep = f"ipc://{tmp_path}/feed.sock"
    rad = "{kind: planck, R: %r, B: %r, F: %r, O: %r}" % (PLANCK.R, PLANCK.B, PLANCK.F, PLANCK.O)
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--config", str(REPO / "configs/files.yaml"), "--quiet",
           "--vis", str(tmp_path / "vis.mkv"), "--ir", str(tmp_path / "ir.y16"), "--fuser", "laplacian",
           "--calibration", str(REPO / "configs/calibration/demo.yaml"), "--output", str(tmp_path / "rec"),
           "--set", "capture_ir.width=320", "--set", "capture_ir.height=256", "--set", "capture_ir.fps=10",
           "--set", f"capture_ir.radiometric={rad}", "--set", "pipeline.startup_timeout_s=180",
           "--set", "pipeline.policy=lossless", "--set", "detector_feed.enabled=true",
           "--set", f"detector_feed.endpoint=pub+bind:{feed_ep}"]
    feed = FeedListener(feed_ep)
    feed.start()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=90)
        time.sleep(0.5)                                      # the last packets in flight
        feed.stop.set()
        feed.join(5)
    got = feed.fused()
    assert proc.returncode == 0, err[-2000:]
    assert len(got) >= 10, err[-3000:]                     # a late subscriber may miss the first few
    fx, fy, fc = fire_truth()
    for p in got:
        assert p.dtypes["ir_counts"] == np.uint16
        hot = p.meta["ir_temperature_c"]["hottest"]
        assert hot["c"] == pytest.approx(fc, abs=1.0) and np.hypot(hot["x"] - fx, hot["y"] - fy) <= 2.0
