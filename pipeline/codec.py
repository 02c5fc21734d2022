"""The wire codec: a Packet as a multipart message of one JSON header plus raw buffers.

Message layout (version 1), one ZeroMQ frame per item:

    frame 0: UTF-8 JSON header
        {"wire": "smokefusion", "v": 1,
         "stream": str, "kind": "frame"|"pair"|"fused"|"eos", "seq": int,
         "t_mono": float, "t_wall": float, "pts": float|null, "meta": {...},
         "buffers": [{"name": str, "dtype": "uint8", "shape": [H, W(, C)]}, ...]}
    frame 1..n: the raw C-contiguous bytes of each buffer, in header order.

Buffers are sent without copying (`copy=False`) and received as read-only numpy views of the
ZeroMQ frames. Nothing is ever pickled: the header is JSON and only plain numeric dtypes are
accepted, so a message from an untrusted peer can at worst be rejected with `CodecError`.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from pipeline.packet import KINDS, Packet

WIRE_NAME = "smokefusion"
WIRE_VERSION = 1
# Plain numeric dtypes only: an object dtype would need pickle, which this codec never does.
ALLOWED_DTYPES = ("uint8", "uint16", "int16", "int32", "float16", "float32", "float64")
MAX_HEADER_BYTES = 1 << 20  # a header above 1 MiB is a corrupt or hostile message


class CodecError(ValueError):
    """A message is not a valid packet of this wire version; the message says what is wrong."""


def encode(packet: Packet) -> list[Any]:
    """Packet -> [header bytes, buffer, buffer, ...] for `socket.send_multipart(copy=False)`.

    Buffers are made C-contiguous (a copy only if they are not already); the returned
    buffers share memory with the packet, so do not modify them until the send completed.
    """
    specs, frames = [], []
    for name, arr in packet.buffers.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise CodecError(f"buffer {name!r}: dtype {arr.dtype} not allowed on the wire (expected one of {ALLOWED_DTYPES})")
        specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        frames.append(memoryview(arr).cast("B") if arr.size else b"")
    header = {
        "wire": WIRE_NAME, "v": WIRE_VERSION,
        "stream": packet.stream, "kind": packet.kind, "seq": int(packet.seq),
        "t_mono": float(packet.t_mono), "t_wall": float(packet.t_wall),
        "pts": None if packet.pts is None else float(packet.pts),
        "meta": packet.meta, "buffers": specs,
    }
    try:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise CodecError(f"packet meta is not JSON-serialisable: {e}") from None
    return [head, *frames]


def _as_bytes_view(frame: Any) -> memoryview:
    # zmq.Frame (copy=False) exposes .buffer; bytes/bytearray/memoryview come from copy=True or tests.
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf)


def decode(frames: Sequence[Any]) -> Packet:
    """[header, buffer, ...] -> Packet. Raises CodecError on anything malformed.

    Buffers are read-only views of the received frames (zero-copy); copy them before
    modifying in place.
    """
    if not frames:
        raise CodecError("empty message (expected a JSON header frame)")
    head = _as_bytes_view(frames[0])
    if head.nbytes > MAX_HEADER_BYTES:
        raise CodecError(f"header of {head.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(head.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodecError(f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict) or header.get("wire") != WIRE_NAME:
        raise CodecError(f"not a {WIRE_NAME} message (header lacks \"wire\": \"{WIRE_NAME}\")")
    if header.get("v") != WIRE_VERSION:
        raise CodecError(f"wire version {header.get('v')!r}, expected {WIRE_VERSION}")
    try:
        kind, specs, meta = header["kind"], header["buffers"], header["meta"]
        stream, seq = str(header["stream"]), int(header["seq"])
        t_mono, t_wall = float(header["t_mono"]), float(header["t_wall"])
        pts = None if header["pts"] is None else float(header["pts"])
    except (KeyError, TypeError, ValueError) as e:
        raise CodecError(f"header field missing or of the wrong type: {e}") from None
    if kind not in KINDS:
        raise CodecError(f"kind {kind!r} not one of {KINDS}")
    if not isinstance(meta, dict) or not isinstance(specs, list):
        raise CodecError("header 'meta' must be an object and 'buffers' a list")
    if len(specs) != len(frames) - 1:
        raise CodecError(f"header lists {len(specs)} buffers but the message carries {len(frames) - 1}")
    buffers: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:]):
        try:
            name, dtype, shape = str(spec["name"]), str(spec["dtype"]), tuple(int(s) for s in spec["shape"])
        except (KeyError, TypeError, ValueError) as e:
            raise CodecError(f"buffer spec malformed: {e}") from None
        if dtype not in ALLOWED_DTYPES:
            raise CodecError(f"buffer {name!r}: dtype {dtype!r} not allowed (expected one of {ALLOWED_DTYPES})")
        if any(s < 0 for s in shape):
            raise CodecError(f"buffer {name!r}: negative shape {shape}")
        view = _as_bytes_view(frame)
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if view.nbytes != expected:
            raise CodecError(f"buffer {name!r}: {view.nbytes} bytes, expected {expected} for {dtype}{list(shape)}")
        arr = np.frombuffer(view, dtype=dtype).reshape(shape)
        buffers[name] = arr
    return Packet(stream=stream, kind=kind, seq=seq, t_mono=t_mono, t_wall=t_wall, pts=pts,
                  buffers=buffers, meta=meta)
