"""A recording disk that fills up mid-run: a real tmpfs of 4 MB the test mounts (root only; the
test skips with the reason elsewhere), nearly filled before the run starts.

recorder.on_disk_full: stop_recording (default): one error line, recording stops and every later
frame is counted as dropped, fusion and the detector feed go on, the run exits 0 at its duration,
frames_written + dropped = frames fused, and every segment closed before the disk filled decodes
completely. exit: the run ends at once with status 1 and that one line, the recorder is not
restarted, and the closed segments still decode.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from test_run_stream import cli  # noqa: E402

from feed_listener import FeedListener  # noqa: E402

FREE_BYTES = 350_000        # what the recording finds free: a few seconds of the demo at 320x256


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs at tmp_path/disk with only FREE_BYTES left; unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        free = shutil.disk_usage(disk).free
        with open(disk / "filler.bin", "wb") as f:
            f.write(b"\0" * (free - FREE_BYTES))
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def decoded_frames(path: Path, truncated: bool = False) -> int:
    """Frames that decode; a truncated file (the one the full disk cut) counts up to where it breaks."""
    n = 0
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                n += 1
    except av.FFmpegError:
        if not truncated:
            raise
    return n


def run_until_full(tmp_path, disk, *extra):
    cmd, env, feed_ep = cli(tmp_path, "--output", str(disk / "rec"), "--set", "recorder.segment_s=1.5",
                            "--set", "recorder.gop_s=0.5", *extra)
    feed = FeedListener(feed_ep)
    feed.start()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    feed.stop.set()
    feed.join(5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    return r, summary, feed


def test_disk_full_stops_recording_and_the_run_goes_on(tmp_path, small_disk):
    r, summary, feed = run_until_full(tmp_path, small_disk, "--duration", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    full_lines = [line for line in r.stderr.splitlines() if "disk full" in line]
    assert len(full_lines) == 1, full_lines
    assert "recorder: disk full writing" in full_lines[0] and "recording stopped" in full_lines[0]
    nodes = summary["nodes"]
    rec, fusion = nodes["recorder"], nodes["fusion"]
    fused = fusion["totals"]["out"]
    written, dropped = rec["stage"]["frames_written"], rec["stage"]["drops"]
    edge = fusion["outputs"]["fusion->recorder"]["dropped"] + rec["drops_in"]
    print(f"disk full: fused {fused}, recorded {written}, dropped {dropped} (+{edge} on the edge), "
          f"feed {len(feed.fused())}, files {len(rec['stage']['files'])}")
    assert rec["stage"]["disk_full"] and rec["restarts"] == 0
    assert written + dropped + edge == fused                  # nothing lost that is not counted
    assert dropped >= 40 and written >= 20                    # it filled up part way through the run
    assert len(feed.fused()) >= 0.9 * fused                              # the detector feed went on to the end
    files = [Path(f) for f in rec["stage"]["files"]]
    # Segments closed before the disk filled play to the end; the one being written (and one being
    # finished as it filled) up to where the disk cut it; together exactly frames_written.
    closed, cut = files[:-2], files[-2:]
    assert len(closed) >= 1
    counts = [decoded_frames(f) for f in closed]
    assert all(c > 0 for c in counts)
    counts += [decoded_frames(f, truncated=True) for f in cut]
    print(f"decoded frames per file: {counts}")
    assert sum(counts) == written


def test_disk_full_with_exit_ends_the_run_with_one_line(tmp_path, small_disk):
    r, summary, _ = run_until_full(tmp_path, small_disk, "--duration", "60", "--set", "recorder.on_disk_full=exit")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage recorder failed: DiskFullError: recorder: disk full") \
        and "on_disk_full: exit ends the run" in last, last
    assert "restarting" not in r.stderr and summary["elapsed_s"] < 40
    files = [Path(f) for f in summary["nodes"]["recorder"]["stage"]["files"]]
    assert len(files) >= 3 and all(decoded_frames(f) > 0 for f in files[:-2])
