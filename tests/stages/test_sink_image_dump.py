"""Image dump sink: every Nth packet, bounded count, readable PNGs."""
import cv2
import numpy as np
import pytest

from pipeline.packet import Packet
from stages.sinks.image_dump import ImageDumpConfig, ImageDumpError, ImageDumpSink


def _pair(seq):
    vis = np.full((8, 10, 3), seq, np.uint8)
    ir = np.full((8, 10), 100 + seq, np.uint8)
    return Packet("s", "pair", seq, 0.0, 0.0, buffers={"vis": vis, "ir": ir})


def test_every_nth_packet_bounded_and_exact(tmp_path):
    sink = ImageDumpSink(ImageDumpConfig(out_dir=str(tmp_path / "d"), every_n=3, max_images=6))
    sink.start()
    for seq in range(20):
        sink.process(_pair(seq))
    sink.finish()
    sink.stop()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        f"s_{seq:06d}_{b}.png" for seq in (0, 3, 6) for b in ("ir", "vis")]
    assert sink.stats() == {"images_written": 6, "skipped": 4}      # seq 9, 12, 15, 18 skipped
    assert np.array_equal(cv2.imread(str(tmp_path / "d" / "s_000006_vis.png")), _pair(6).buffers["vis"])
    assert np.array_equal(cv2.imread(str(tmp_path / "d" / "s_000003_ir.png"), cv2.IMREAD_UNCHANGED),
                          _pair(3).buffers["ir"])


def test_buffer_selection_and_bad_config(tmp_path):
    sink = ImageDumpSink(ImageDumpConfig(out_dir=str(tmp_path), every_n=1, buffers=("ir",)))
    sink.start()
    sink.process(_pair(1))
    assert [p.name for p in sink.files] == ["s_000001_ir.png"]
    with pytest.raises(ImageDumpError, match="every_n"):
        ImageDumpSink(ImageDumpConfig(every_n=0))
