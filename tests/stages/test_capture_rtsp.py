"""RTSP source against a real GStreamer RTSP server on loopback (tests/rtsp_server.py).

The server runs with basic auth, so every URL here carries a password that must never show up
in logs, errors, stats or packet meta.
"""
import json
import logging
import socket
import time

import numpy as np
import pytest
from rtsp_fixture import RTSP_PASSWORD

from stages.capture.rtsp import RtspConfig, RtspError, RtspSource
from pipeline.config import mask_url


def _fast(url, modality="vis", **kw):
    """Short timeouts and backoff so outages resolve within a test's patience."""
    kw = {"open_timeout_s": 2.0, "read_timeout_s": 1.0, "first_frame_timeout_s": 3.0,
          "backoff_initial_s": 0.25, "backoff_max_s": 1.0, **kw}
    return RtspSource(RtspConfig(url=url, modality=modality, stream="cam", **kw))


def _collect(src, seconds):
    out, t_end = [], time.monotonic() + seconds
    while time.monotonic() < t_end:
        p = src.read(0.5)
        if p is not None:
            out.append(p)
    return out


def _assert_no_password(text):
    assert RTSP_PASSWORD not in text


def test_mask_url():
    assert mask_url("rtsp://admin:pa:ss@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert mask_url("x 'rtsp://u:p@h/a' and rtsps://v:q@k/b") == "x 'rtsp://u:***@h/a' and rtsps://v:***@k/b"
    assert mask_url("rtsp://host/no/auth") == "rtsp://host/no/auth"


@pytest.mark.rtsp
@pytest.mark.parametrize("mount,modality,shape,fps", [("/vis", "vis", (480, 640, 3), 20), ("/ir", "ir", (256, 320), 10)])
def test_frames_arrive_with_stamps_and_masked_meta(rtsp_server, mount, modality, shape, fps):
    src = _fast(rtsp_server.url(mount), modality)
    src.start()
    try:
        first = src.read(5.0)
        assert first is not None, src.stats()
        frames = [first] + _collect(src, 1.5)
    finally:
        src.stop()
    assert all(p.kind == "frame" and p.buffers[modality].shape == shape for p in frames)
    assert all(p.buffers[modality].dtype == np.uint8 and p.buffers[modality].flags["C_CONTIGUOUS"] for p in frames)
    assert len(frames) >= 0.6 * 1.5 * fps
    assert np.all(np.diff([p.seq for p in frames]) >= 1) and np.all(np.diff([p.t_mono for p in frames]) > 0)
    assert abs(frames[-1].t_wall - time.time()) < 2.0
    pts = [p.pts for p in frames if p.pts is not None]
    assert len(pts) >= len(frames) - 1 and np.all(np.diff(pts) > 0)
    assert np.median(np.diff(pts)) == pytest.approx(1 / fps, abs=0.005)
    meta = frames[0].meta
    assert meta["modality"] == modality and meta["source"] == f"rtsp://admin:***@127.0.0.1:{rtsp_server.port}{mount}"
    _assert_no_password(json.dumps([p.meta for p in frames]) + json.dumps(src.stats()))


@pytest.mark.rtsp
def test_slow_reader_gets_the_newest_frame_and_drops_are_counted(rtsp_server):
    src = _fast(rtsp_server.url("/vis"))
    src.start()
    try:
        assert src.read(5.0) is not None
        time.sleep(1.0)                                  # the consumer stalls for 20 camera frames
        p = src.read(1.0)
        assert time.monotonic() - p.t_mono < 0.25         # newest, not a second-old frame
        assert src.drops >= 10
        nxt = src.read(1.0)
        assert nxt.seq > p.seq
    finally:
        src.stop()


@pytest.mark.rtsp
def test_server_kill_and_restart_is_survived(rtsp_server, caplog):
    caplog.set_level(logging.DEBUG)
    src = _fast(rtsp_server.url("/ir"), "ir", max_retries=None)
    src.start()
    try:
        assert src.read(5.0) is not None
        _collect(src, 1.2)                               # healthy for > backoff_max_s: retry at once
        rtsp_server.kill()                               # 2 s outage on the same port
        time.sleep(2.0)
        t_back = rtsp_server.start()
        after = None
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            p = src.read(0.5)
            if p is not None and p.meta["connection"] >= 1:
                after = p
                break
        assert after is not None, src.stats()
        stats = src.stats()
        assert stats["reconnects"] == 1 and len(stats["reconnect_events"]) == 1
        event = stats["reconnect_events"][0]
        assert 2.0 <= event["gap_s"] < 6.0 and event["t_last_frame"] <= event["t_lost"] < event["t_first_frame"]
        assert after.t_mono - t_back < 3.0               # backoff is capped at 1 s here
        assert len(_collect(src, 1.0)) >= 6             # and the stream flows again
    finally:
        src.stop()
    assert "stream ended (server closed the connection); reconnecting now" in caplog.text
    _assert_no_password(caplog.text + json.dumps(src.stats()))


@pytest.mark.rtsp
def test_wrong_password_gives_up_with_a_masked_one_line_error(rtsp_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = rtsp_server.url("/vis").replace(RTSP_PASSWORD, "Wr0ng-" + RTSP_PASSWORD)
    src = _fast(url, max_retries=1, backoff_initial_s=0.1)
    src.start()
    t0 = time.monotonic()
    with pytest.raises(RtspError) as err:
        while time.monotonic() - t0 < 10:
            src.read(0.5)
    src.stop()
    msg = str(err.value)
    assert "\n" not in msg and "401" in msg and f"rtsp://admin:***@127.0.0.1:{rtsp_server.port}/vis" in msg
    _assert_no_password(msg + caplog.text)


def test_unreachable_camera_errors_after_retries_naming_url_and_timeout(caplog):
    # A listener that accepts and never answers: the open timeout must fire (no hang).
    caplog.set_level(logging.DEBUG)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"rtsp://admin:{RTSP_PASSWORD}@127.0.0.1:{silent.getsockname()[1]}/cam"
        src = _fast(url, open_timeout_s=0.5, max_retries=1, backoff_initial_s=0.1)
        src.start()
        t0 = time.monotonic()
        with pytest.raises(RtspError) as err:
            while time.monotonic() - t0 < 10:
                src.read(0.2)
        elapsed = time.monotonic() - t0
        src.stop()
    assert elapsed < 2 * 0.5 + 0.1 + 1.0                 # two attempts of 0.5 s, one 0.1 s backoff
    msg = str(err.value)
    assert "open timeout of 0.5 s" in msg and "gave up after 1 retries" in msg and "\n" not in msg
    assert "rtsp://admin:***@127.0.0.1:" in msg
    assert caplog.text.count("retry 1/1") == 1               # one warning per backoff step
    _assert_no_password(msg + caplog.text)


def test_refused_connection_with_retries_forever_keeps_trying(caplog):
    caplog.set_level(logging.WARNING)
    with socket.socket() as s:                            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = _fast(f"rtsp://u:{RTSP_PASSWORD}@127.0.0.1:{port}/x", max_retries=None, backoff_initial_s=0.05, backoff_max_s=0.2)
    src.start()
    assert src.read(1.0) is None                           # no error: it keeps retrying
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 1.0
    assert src.attempts >= 4 and "Connection refused" in src.last_error
    _assert_no_password(caplog.text + src.last_error)


def test_bad_url_is_rejected_at_construction():
    with pytest.raises(RtspError, match=r"rtsp://.*got 'http://u:\*\*\*@h/x'"):
        RtspSource(RtspConfig(url="http://u:pw@h/x"))


@pytest.mark.rtsp
def test_session_that_opens_but_sends_no_frame_is_retried_then_fails_clearly(rtsp_server):
    src = _fast(rtsp_server.url("/stall"), open_timeout_s=1.0, read_timeout_s=0.5, first_frame_timeout_s=0.5,
                max_retries=1, backoff_initial_s=0.1)
    src.start()
    t0 = time.monotonic()
    with pytest.raises(RtspError) as err:
        while time.monotonic() - t0 < 15:
            assert src.read(0.2) is None
    elapsed = time.monotonic() - t0
    src.stop()
    assert src.attempts == 2 and src.frames == 0
    assert elapsed < 2 * (1.0 + 0.5) + 0.1 + 1.5          # each attempt bounded by its timeouts
    assert "timeout" in str(err.value) and "/stall" in str(err.value)
