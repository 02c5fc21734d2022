"""Endpoints and packet sockets on real ZeroMQ sockets (inproc and ipc)."""
import time

import numpy as np
import pytest
import zmq

from pipeline.codec import encode
from pipeline.packet import Packet
from pipeline.transport import EndpointError, PacketReceiver, PacketSender, parse_endpoint


@pytest.mark.parametrize("text, sock, bind, address", [
    ("push+bind:ipc:///tmp/x.sock", "push", True, "ipc:///tmp/x.sock"),
    ("pull+connect:tcp://127.0.0.1:5555", "pull", False, "tcp://127.0.0.1:5555"),
    ("pub+bind:tcp://127.0.0.1:5560", "pub", True, "tcp://127.0.0.1:5560"),
    ("sub+connect:tcp://cam-host:5560", "sub", False, "tcp://cam-host:5560"),
    ("pull+bind:inproc://fusion", "pull", True, "inproc://fusion"),
])
def test_endpoint_parsing(text, sock, bind, address):
    ep = parse_endpoint(text)
    assert (ep.socket, ep.bind, ep.address) == (sock, bind, address)
    assert str(ep) == text
    assert str(ep.peer("push")) == f"push+{'connect' if bind else 'bind'}:{address}"


@pytest.mark.parametrize("text, match", [
    ("tcp://127.0.0.1:5555", "expected <push|pull|pub|sub>"),
    ("req+bind:tcp://127.0.0.1:5555", "socket 'req'"),
    ("push+listen:tcp://127.0.0.1:5555", "'listen' must be 'bind' or 'connect'"),
    ("push+bind:udp://127.0.0.1:5555", "address must be"),
    ("push+bind:tcp://127.0.0.1", "HOST:PORT"),
    ("push+bind:tcp://127.0.0.1:99999", "HOST:PORT"),
    ("push+bind:tcp://0.0.0.0:5555", "allow_public_bind"),
    ("push+bind:tcp://*:5555", "allow_public_bind"),
])
def test_endpoint_errors_name_the_string(text, match):
    with pytest.raises(EndpointError, match=match) as e:
        parse_endpoint(text)
    assert repr(text) in str(e.value)


def test_public_bind_only_when_allowed():
    assert parse_endpoint("pull+bind:tcp://0.0.0.0:5555", allow_public_bind=True).bind
    assert not parse_endpoint("push+connect:tcp://10.0.0.2:5555").bind   # connecting anywhere is fine


def frame(seq, eos=False):
    if eos:
        return Packet.eos("s", seq=seq)
    return Packet("s", "frame", seq, time.monotonic(), time.time(),
                  buffers={"ir": np.full((8, 8), seq % 256, np.uint8)}, meta={"modality": "ir"})


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


def recv_all(rx, n, timeout_s=5.0):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        p = rx.get(0.05)
        if p is not None:
            got.append(p)
    return got


@pytest.mark.parametrize("policy", ["block", "drop_oldest"])
def test_corrupt_message_on_a_real_socket_is_counted_and_skipped(ctx, tmp_path, policy):
    addr = f"ipc://{tmp_path}/in.sock"
    rx = PacketReceiver(ctx, parse_endpoint(f"pull+bind:{addr}"), policy, queue_len=8)
    raw = ctx.socket(zmq.PUSH)
    raw.connect(addr)
    try:
        good = encode(frame(1))
        raw.send_multipart([bytes(f) for f in encode(frame(0))])
        raw.send_multipart([b"garbage that is not json"])
        raw.send_multipart([b'{"wire": "smokefusion", "v": 99}'])
        raw.send_multipart([good[0], bytes(good[1])[:-5]])      # truncated pixels
        raw.send_multipart([bytes(f) for f in good])
        got = recv_all(rx, 2)
        assert [p.seq for p in got] == [0, 1]
        deadline = time.monotonic() + 2
        while rx.corrupt < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rx.corrupt == 3 and rx.received == 2
    finally:
        raw.close(0)
        rx.close()


def test_drop_oldest_keeps_newest_counts_drops_and_never_drops_eos(ctx):
    rx = PacketReceiver(ctx, parse_endpoint("pull+bind:inproc://drop"), "drop_oldest", queue_len=3)
    tx = PacketSender(ctx, parse_endpoint("push+connect:inproc://drop"), block=False)
    try:
        tx.send(frame(0))
        tx.send(frame(-1, eos=True))         # an EOS from one upstream, early in the queue
        for i in range(1, 11):
            tx.send(frame(i))
        deadline = time.monotonic() + 3
        while rx.received < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        got = recv_all(rx, 3)
        assert [p.seq for p in got] == [-1, 9, 10]
        assert got[0].is_eos
        assert rx.dropped == 9 and rx.depth == 0
    finally:
        tx.close()
        rx.close()


def test_block_policy_is_lossless_and_ordered_under_back_pressure(ctx):
    rx = PacketReceiver(ctx, parse_endpoint("pull+bind:inproc://block"), "block")
    tx = PacketSender(ctx, parse_endpoint("push+connect:inproc://block"), block=True)
    try:
        import threading
        sent = []
        t = threading.Thread(target=lambda: sent.extend(tx.send(frame(i)) for i in range(40)))
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "the sender should be held back by the bounded high-water marks"
        got = recv_all(rx, 40)
        t.join(5)
        assert all(sent) and [p.seq for p in got] == list(range(40))
        assert rx.dropped == 0 and tx.dropped == 0
    finally:
        tx.close()
        rx.close()


def test_blocking_send_gives_up_when_told_to(ctx):
    tx = PacketSender(ctx, parse_endpoint("push+bind:inproc://nobody"), block=True)
    try:
        t0 = time.monotonic()
        results = [tx.send(frame(i), keep_trying=lambda: time.monotonic() - t0 < 0.3) for i in range(20)]
        assert time.monotonic() - t0 < 3
        assert not all(results) and tx.dropped >= 1
    finally:
        tx.close()
