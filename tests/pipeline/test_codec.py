"""Wire codec: round trips, and every malformed message is a CodecError (never a crash)."""
import json

import numpy as np
import pytest

from pipeline.codec import WIRE_VERSION, CodecError, decode, encode
from pipeline.packet import Packet


def _as_bytes(frames):
    return [bytes(f) for f in frames]


def make_fused(h=24, w=32):
    rng = np.random.default_rng(0)
    return Packet(stream="site0", kind="fused", seq=7, t_mono=123.25, t_wall=1.7e9, pts=0.7,
                  buffers={"vis": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                           "ir": rng.integers(0, 255, (h, w), dtype=np.uint8),
                           "fused": rng.integers(0, 255, (h, w, 3), dtype=np.uint8)},
                  meta={"skew_ms": -3.5, "fuser": "laplacian", "vis_seq": 14, "ir_seq": 7})


def test_round_trip_keeps_every_field_and_pixel():
    p = make_fused()
    q = decode(_as_bytes(encode(p)))
    assert (q.stream, q.kind, q.seq, q.t_mono, q.t_wall, q.pts) == (p.stream, p.kind, p.seq, p.t_mono, p.t_wall, p.pts)
    assert q.meta == p.meta
    assert list(q.buffers) == list(p.buffers)
    for k in p.buffers:
        assert q.buffers[k].dtype == p.buffers[k].dtype and q.buffers[k].shape == p.buffers[k].shape
        np.testing.assert_array_equal(q.buffers[k], p.buffers[k])


def test_round_trip_eos_and_pts_none_and_non_contiguous_buffer():
    eos = Packet.eos("site0", seq=3, reason="stop")
    q = decode(_as_bytes(encode(eos)))
    assert q.is_eos and q.buffers == {} and q.meta == {"reason": "stop"} and q.pts is None
    base = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    view = base[::2, ::2]                       # not C-contiguous
    q = decode(_as_bytes(encode(Packet("s", "frame", 0, 0.0, 0.0, buffers={"ir": view}, meta={"modality": "ir"}))))
    np.testing.assert_array_equal(q.buffers["ir"], view)


def test_header_is_json_and_buffers_are_raw_bytes():
    p = make_fused(4, 5)
    frames = _as_bytes(encode(p))
    header = json.loads(frames[0])
    assert header["v"] == WIRE_VERSION and header["wire"] == "smokefusion"
    assert [b["name"] for b in header["buffers"]] == ["vis", "ir", "fused"]
    assert frames[1] == p.buffers["vis"].tobytes()     # raw pixels, no pickle framing
    assert len(frames) == 4


def _corrupt(frames, **changes):
    header = json.loads(frames[0])
    header.update(changes)
    return [json.dumps(header).encode(), *frames[1:]]


@pytest.mark.parametrize("mutate, match", [
    (lambda f: [b"\xff\xfenot json", *f[1:]], "not UTF-8 JSON"),
    (lambda f: [b"[1, 2]", *f[1:]], "not a smokefusion message"),
    (lambda f: _corrupt(f, v=WIRE_VERSION + 1), "wire version 2, expected 1"),
    (lambda f: _corrupt(f, kind="blob"), "kind 'blob'"),
    (lambda f: f[:-1], "lists 3 buffers but the message carries 2"),
    (lambda f: [f[0], f[1][:-1], *f[2:]], "expected 2304 for uint8"),
    (lambda f: _corrupt(f, seq="x"), "wrong type"),
    (lambda f: [], "empty message"),
])
def test_malformed_messages_raise_codec_error(mutate, match):
    frames = _as_bytes(encode(make_fused()))
    with pytest.raises(CodecError, match=match):
        decode(mutate(frames))


def test_object_dtype_is_refused_both_ways():
    p = Packet("s", "frame", 0, 0.0, 0.0, buffers={"x": np.array([object()], dtype=object)})
    with pytest.raises(CodecError, match="not allowed"):
        encode(p)
    frames = _as_bytes(encode(make_fused()))
    header = json.loads(frames[0])
    header["buffers"][0]["dtype"] = "object"
    with pytest.raises(CodecError, match="not allowed"):
        decode([json.dumps(header).encode(), *frames[1:]])


def test_meta_that_is_not_json_is_a_codec_error():
    with pytest.raises(CodecError, match="JSON"):
        encode(Packet("s", "frame", 0, 0.0, 0.0, meta={"bad": object()}))
