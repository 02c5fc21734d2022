"""Video file and image folder sources, on files written here with PyAV and OpenCV."""
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from fake_clock import FakeClock
from stages.capture.image_folder import ImageFolderConfig, ImageFolderSource, natural_key
from stages.capture.source import CaptureError
from stages.capture.video_file import VideoFileConfig, VideoFileSource


def _write_video(path, n=20, fps=10, w=66, h=48):
    """n frames whose mean brightness encodes the index (10 * i + 20)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "10"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), 10 * i + 20, np.uint8)
            img[:, : w // 4] = (0, 0, 255)                       # a red band: colour survives decode
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def _drain(src, timeout_s=1.0, limit=1000):
    out = []
    for _ in range(limit):
        p = src.read(timeout_s)
        if p is None:
            continue
        out.append(p)
        if p.is_eos:
            break
    return out


def test_video_file_frames_pts_and_eos(tmp_path):
    _write_video(tmp_path / "v.mp4")
    src = VideoFileSource(VideoFileConfig(path=str(tmp_path / "v.mp4"), modality="vis"))
    src.start()
    packets = _drain(src)
    assert src.read(0.1) is None                                   # eos comes once
    src.stop()
    frames, eos = packets[:-1], packets[-1]
    assert eos.is_eos and len(frames) == 20
    assert [p.seq for p in frames] == list(range(20))
    assert [p.pts for p in frames] == pytest.approx([i / 10 for i in range(20)], abs=1e-6)
    t = np.array([p.t_mono for p in frames])
    np.testing.assert_allclose(t - t[0], np.arange(20) / 10, atol=1e-6)  # media clock
    img = frames[5].buffers["vis"]
    assert img.shape == (48, 66, 3) and abs(int(img[:, 32:, 1].mean()) - 70) <= 3
    assert img.flags["C_CONTIGUOUS"]                  # PyAV's padded rows are not passed on
    assert img[:, :8, 2].mean() > 200 and img[:, :8, 0].mean() < 50
    assert frames[0].meta == {"modality": "vis", "source": str(tmp_path / "v.mp4"), "clock": "media"}


def test_video_file_as_ir_is_gray_and_loops_with_increasing_time(tmp_path):
    _write_video(tmp_path / "v.mp4", n=5)
    src = VideoFileSource(VideoFileConfig(path=str(tmp_path / "v.mp4"), modality="ir", loop=True, max_frames=12))
    src.start()
    packets = _drain(src)
    frames = packets[:-1]
    assert len(frames) == 12 and packets[-1].is_eos
    assert frames[0].buffers["ir"].shape == (48, 66) and frames[0].buffers["ir"].flags["C_CONTIGUOUS"]
    assert [p.pts for p in frames] == pytest.approx([i / 10 for i in range(12)], abs=1e-6)
    assert abs(int(frames[7].buffers["ir"][:, 32:].mean()) - int(frames[2].buffers["ir"][:, 32:].mean())) <= 1


def test_video_file_realtime_paces_by_pts(tmp_path):
    _write_video(tmp_path / "v.mp4", n=6)
    clock = FakeClock()
    src = VideoFileSource(VideoFileConfig(path=str(tmp_path / "v.mp4"), realtime=True), clock=clock.host())
    src.start()
    t0 = clock.now
    packets = _drain(src, timeout_s=0.05)
    # 6 frames at 10 fps: the last one is due 0.5 s after the first; nothing comes early.
    assert len(packets) == 7 and clock.now - t0 == pytest.approx(0.5, abs=1e-6)
    assert [p.t_mono - t0 for p in packets[:-1]] == pytest.approx([n / 10 for n in range(6)], abs=1e-6)


def test_video_file_errors_name_the_file(tmp_path):
    with pytest.raises(CaptureError, match="nope.mp4"):
        VideoFileSource(VideoFileConfig(path=str(tmp_path / "nope.mp4"))).start()
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(CaptureError, match="junk.mp4"):
        VideoFileSource(VideoFileConfig(path=str(tmp_path / "junk.mp4"))).start()


def _write_images(folder, n, gray=False):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        img = np.full((20, 30) if gray else (20, 30, 3), 10 * i, np.uint8)
        cv2.imwrite(str(folder / f"frame{i}.png"), img)


def test_natural_sort():
    assert sorted(["f10.png", "f2.png", "F1.png"], key=natural_key) == ["F1.png", "f2.png", "f10.png"]


def test_image_folder_order_fps_colour_and_eos(tmp_path):
    _write_images(tmp_path / "seq", 12)
    (tmp_path / "seq" / "notes.txt").write_text("not an image")
    src = ImageFolderSource(ImageFolderConfig(path=str(tmp_path / "seq"), modality="vis", fps=4.0))
    src.start()
    packets = _drain(src)
    frames = packets[:-1]
    assert packets[-1].is_eos and len(frames) == 12
    assert [int(p.buffers["vis"][0, 0, 0]) for p in frames] == [10 * i for i in range(12)]   # frame2 < frame10
    assert [p.pts for p in frames] == pytest.approx([i / 4 for i in range(12)])
    assert frames[3].t_mono - frames[0].t_mono == pytest.approx(0.75)
    assert frames[0].buffers["vis"].shape == (20, 30, 3)
    assert frames[10].meta["source"].endswith("frame10.png")


def test_image_folder_glob_and_gray(tmp_path):
    _write_images(tmp_path, 5, gray=False)
    src = ImageFolderSource(ImageFolderConfig(path=str(tmp_path / "frame[1-3].png"), modality="ir"))
    src.start()
    frames = _drain(src)[:-1]
    assert [p.buffers["ir"].shape for p in frames] == [(20, 30)] * 3
    assert [int(p.buffers["ir"][0, 0]) for p in frames] == [10, 20, 30]


def test_image_folder_corrupt_image_raises_naming_the_file_or_skips(tmp_path):
    _write_images(tmp_path, 4)
    (tmp_path / "frame2.png").write_bytes(b"\x89PNG garbage")
    src = ImageFolderSource(ImageFolderConfig(path=str(tmp_path)))
    src.start()
    src.read(0.1)
    src.read(0.1)
    with pytest.raises(CaptureError, match=r"frame2\.png is corrupt"):
        src.read(0.1)
    src = ImageFolderSource(ImageFolderConfig(path=str(tmp_path), on_error="skip", fps=10))
    src.start()
    frames = _drain(src)[:-1]
    assert [p.pts for p in frames] == pytest.approx([0.0, 0.1, 0.3])    # the gap stays in time
    assert src.skipped == 1


def test_image_folder_empty_is_a_clear_error(tmp_path):
    with pytest.raises(CaptureError, match="no images at"):
        ImageFolderSource(ImageFolderConfig(path=str(tmp_path))).start()


DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.data
def test_real_tno_sequence_pairs_by_timestamp():
    seq = DATA / "tno_sequences" / "FEL_images" / "Duine_sequence"
    if not seq.is_dir():
        pytest.skip(f"TNO sequences not found at {seq} (see ../shared/data/tno_sequences/README.txt)")
    vis = ImageFolderSource(ImageFolderConfig(path=str(seq / "visual" / "*v.bmp"), modality="vis", fps=10))
    ir = ImageFolderSource(ImageFolderConfig(path=str(seq / "thermal" / "*i.bmp"), modality="ir", fps=10))
    vis.start()
    ir.start()
    v, i = _drain(vis)[:-1], _drain(ir)[:-1]
    assert len(v) == len(i) == 23
    assert v[0].buffers["vis"].shape == (270, 360, 3) and i[0].buffers["ir"].shape == (270, 360)
    for a, b in zip(v, i):       # same frame number NNNN at the same media time
        assert Path(a.meta["source"]).name[:4] == Path(b.meta["source"]).name[:4]
        assert abs(a.t_mono - b.t_mono) < 0.005


def test_file_sources_with_a_shared_origin_pair_exactly(tmp_path):
    _write_images(tmp_path / "a", 3)
    _write_video(tmp_path / "b.mp4", n=3)
    origin = time.monotonic() + 5.0
    a = ImageFolderSource(ImageFolderConfig(path=str(tmp_path / "a"), fps=10, clock_origin_mono=origin))
    b = VideoFileSource(VideoFileConfig(path=str(tmp_path / "b.mp4"), modality="ir", clock_origin_mono=origin))
    a.start()
    time.sleep(0.1)
    b.start()
    ta = [p.t_mono for p in _drain(a)[:-1]]
    tb = [p.t_mono for p in _drain(b)[:-1]]
    np.testing.assert_allclose(ta, origin + np.arange(3) / 10, atol=1e-6)
    np.testing.assert_allclose(tb, ta, atol=1e-6)
