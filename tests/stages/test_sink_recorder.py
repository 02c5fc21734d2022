"""Recorder sink: real H.264 files, decoded back with PyAV."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.packet import Packet
from stages.sinks.recorder import RecorderConfig, RecorderError, RecorderSink

REPO = Path(__file__).resolve().parents[2]


def _fused(seq, t, h=256, w=320, gray=False):
    rng = np.random.default_rng(seq)
    vis = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    ir = rng.integers(0, 255, (h, w), dtype=np.uint8)
    fused = ir.copy() if gray else (vis // 2 + 60)
    return Packet("site0", "fused", seq, t_mono=1000.0 + t, t_wall=1.7e9 + t,
                  buffers={"vis": vis, "ir": ir, "fused": fused}, meta={"fuser": "test"})


def _decode(path):
    """(frame count, pts in seconds, container duration in seconds) of a file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [float(f.pts * f.time_base) for f in c.decode(s)]
        duration = c.duration / 1e6 if c.duration else None
        size = (s.codec_context.width, s.codec_context.height)
    return len(pts), pts, duration, size


def test_fragmented_mp4_with_capture_time_pts_and_drops(tmp_path):
    fps = 10.0
    rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), fps=fps, segment_s=None))
    rec.start()
    # 30 frames at 10 fps with frames 10..14 dropped upstream: the file must still span 3.0 s.
    times = [i / fps for i in range(35) if not 10 <= i < 15]
    for seq, t in enumerate(times):
        rec.process(_fused(seq, t))
    rec.finish()
    assert [p.name for p in rec.files] == ["fused_000.mp4"]
    assert rec.stats() == {"frames_written": 30, "files": [str(rec.files[0])], "drops": 0}
    n, pts, duration, size = _decode(rec.files[0])
    assert n == len(times) == 30 and size == (320, 256)
    np.testing.assert_allclose(pts, np.array(times) - times[0], atol=1e-3)
    span = times[-1] - times[0] + 1 / fps
    assert abs(duration - span) <= 1 / fps
    data = rec.files[0].read_bytes()
    assert data[4:8] == b"ftyp" and data.count(b"moof") >= 3          # fragmented: one per keyframe


def test_segments_rotate_by_capture_time(tmp_path):
    rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), fps=10, segment_s=1.0, gop_s=0.5))
    rec.start()
    for i in range(35):                                  # 3.5 s at 10 fps
        rec.process(_fused(i, i / 10))
    rec.stop()
    rec.stop()                                           # idempotent
    assert [p.name for p in rec.files] == [f"fused_{i:03d}.mp4" for i in range(4)]
    counts = [_decode(p)[0] for p in rec.files]
    assert counts == [10, 10, 10, 5]
    assert all(_decode(p)[1][0] == 0.0 for p in rec.files)              # each segment starts at 0


def test_side_by_side_output_and_odd_sizes_and_gray(tmp_path):
    rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), fps=10, side_by_side=True, container="mkv"))
    rec.start()
    for i in range(5):
        rec.process(_fused(i, i / 10, h=121, w=161, gray=True))
    rec.finish()
    assert [p.name for p in rec.files] == ["fused_000.mkv", "fused_sbs_000.mkv"]
    n, _, _, size = _decode(rec.files[0])
    assert n == 5 and size == (162, 122)                                # padded to even
    n, _, _, size = _decode(rec.files[1])
    assert n == 5 and size == (3 * 161 + 1, 122)


def test_side_by_side_shows_the_smoke_map_when_the_packet_has_one():
    from stages.sinks.recorder import side_by_side
    p = _fused(0, 0.0, h=64, w=80)
    t = np.zeros((64, 80), np.uint8)
    t[:, 40:] = 255                                                   # left: smoke, right: clear air
    p.buffers["smoke"] = t
    view = side_by_side(p)
    assert view.shape == (64, 4 * 80, 3)
    smoke_tile = view[:, 3 * 80:]
    viridis = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0]
    assert (smoke_tile[:, :40] == viridis[0]).all() and (smoke_tile[:, 40:] == viridis[1]).all()
    del p.buffers["smoke"]
    assert side_by_side(p).shape == (64, 3 * 80, 3)


def test_never_overwrites_earlier_recordings(tmp_path):
    for _ in range(2):
        rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), fps=10))
        rec.start()
        rec.process(_fused(0, 0.0))
        rec.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused_000.mp4", "fused_001.mp4"]


def test_missing_buffer_and_bad_config_are_clear_errors(tmp_path):
    rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), buffer="thermal"))
    rec.start()
    with pytest.raises(RecorderError, match="'thermal'.*'fused', 'ir', 'vis'"):
        rec.process(_fused(0, 0.0))
    with pytest.raises(RecorderError, match="container"):
        RecorderSink(RecorderConfig(container="avi"))


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from stages.capture.synthetic import SyntheticConfig, SyntheticSource
    from stages.sinks.recorder import RecorderConfig, RecorderSink
    src = SyntheticSource(SyntheticConfig(modality="ir", paced=False))
    rec = RecorderSink(RecorderConfig(out_dir=sys.argv[1], buffer="ir", fps=10, gop_s=1.0, container=sys.argv[3]))
    src.start(); rec.start()
    for i in range(1000):
        rec.process(src.read(1.0))
        print(i + 1, flush=True)
        time.sleep(0.01)
""")


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_sigkill_mid_write_leaves_a_playable_file(tmp_path, container):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path), str(REPO), container],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    written = 0
    deadline = time.monotonic() + 60
    try:
        while written < 35 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert written >= 35, "the writer process did not get going"
    n, pts, _, _ = _decode(tmp_path / f"fused_000.{container}")
    assert n >= 30                                     # everything up to the last fragment (GOP 10)
    np.testing.assert_allclose(np.diff(pts), 0.1, atol=0.0095)  # IR jitter +-4 ms, ms rounding


def test_size_change_and_frames_after_eos_start_new_files(tmp_path):
    rec = RecorderSink(RecorderConfig(out_dir=str(tmp_path), fps=10))
    rec.start()
    for i in range(3):
        rec.process(_fused(i, i / 10, h=64, w=80))
    for i in range(3, 5):
        rec.process(_fused(i, i / 10, h=96, w=128))          # e.g. a camera changed resolution
    rec.finish()
    rec.process(_fused(5, 0.5, h=96, w=128))                # a stream that resumes after eos
    rec.stop()
    assert [(_decode(p)[0], _decode(p)[3]) for p in rec.files] == [(3, (80, 64)), (2, (128, 96)), (1, (128, 96))]
