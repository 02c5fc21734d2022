"""ZeroMQ transport: endpoint strings that say who binds, and packet senders/receivers with an
explicit queue policy. Only the runner and its workers import this; stages never do.

Endpoint grammar (Savant style):  ``<socket>+<bind|connect>:<transport>://<address>``

    push+bind:ipc:///tmp/sf/registration.sock
    pull+connect:tcp://127.0.0.1:5555
    pub+bind:tcp://127.0.0.1:5560

socket is one of push, pull, pub, sub; transport one of ipc, tcp, inproc. A tcp bind must name
a loopback host (127.0.0.0/8, localhost, ::1) unless `allow_public_bind` is set, so nothing is
exposed to the network by accident. Sockets given CurveKeys (pipeline/security.py) use CURVE.

Queue policies (per edge, chosen by the receiving side):
- "block" (file sources, lossless): the receiver reads the socket directly, so bounded
  high-water marks push back on the sender, which waits; nothing is lost.
- "drop_oldest" (live sources): a receiver thread drains the socket into a small bounded deque;
  when it is full the oldest frame is dropped and counted, so a slow consumer always sees the
  newest frames and latency stays bounded. (ZeroMQ's own HWM drops the *newest*, and CONFLATE
  breaks multipart, hence the thread.) End-of-stream packets are never dropped.
"""
from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from pipeline.codec import CodecError, decode, encode
from pipeline.packet import Packet
from pipeline.security import CurveKeys, HandshakeWatch, is_loopback

log = logging.getLogger(__name__)

SOCKET_TYPES = {"push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.PUB, "sub": zmq.SUB}
TRANSPORTS = ("ipc", "tcp", "inproc")
POLICIES = ("block", "drop_oldest")


class Defaults:
    """Every socket constant in one place (units in the names)."""

    SNDHWM = 4                 # messages queued per outgoing pipe; frames are big, keep it small
    RCVHWM = 4                 # messages queued per incoming pipe
    LINGER_MS = 0              # close never waits for unsent messages (shutdown must not hang)
    FLUSH_LINGER_MS = 2000     # after a clean end-of-stream: time the last messages get to leave
    POLL_MS = 50               # receive/send poll slice; stop flags are checked this often
    DROP_QUEUE_LEN = 2         # drop_oldest deque length: how many frames a slow stage may lag
    LIVE_SEND_WAIT_MS = 500    # live edges: longest a sender waits for a stuck receiver before dropping
    PUB_SNDHWM = 8             # detector feed: slow subscribers lose frames beyond this
    DETECTOR_FEED = "pub+bind:tcp://127.0.0.1:5560"
    CONTROL_SNDHWM = 1000      # worker -> runner telemetry messages (small JSON) queued before loss
    CONTROL_LINGER_MS = 2000   # a worker's last "done"/"error" message gets this long to leave


class EndpointError(ValueError):
    """An endpoint string is malformed or not allowed; the message names it and the grammar."""


@dataclass(frozen=True)
class Endpoint:
    socket: str      # push | pull | pub | sub
    bind: bool       # True: this side binds; False: it connects
    address: str     # e.g. "tcp://127.0.0.1:5555", "ipc:///tmp/x.sock", "inproc://x"

    @property
    def transport(self) -> str:
        return self.address.split("://", 1)[0]

    def __str__(self) -> str:
        return f"{self.socket}+{'bind' if self.bind else 'connect'}:{self.address}"

    def peer(self, socket: str) -> "Endpoint":
        """The endpoint the other side of this edge uses: same address, opposite role."""
        return Endpoint(socket=socket, bind=not self.bind, address=self.address)


GRAMMAR = "<push|pull|pub|sub>+<bind|connect>:<ipc|tcp|inproc>://<address>"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (benches and tests bind it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_endpoint(text: str, allow_public_bind: bool = False) -> Endpoint:
    """Parse 'push+bind:ipc:///tmp/x' into an Endpoint. Raises EndpointError naming the string."""
    if not isinstance(text, str) or ":" not in text or "+" not in text.split(":", 1)[0]:
        raise EndpointError(f"endpoint {text!r}: expected {GRAMMAR}")
    role, address = text.split(":", 1)
    sock, _, how = role.partition("+")
    if sock not in SOCKET_TYPES:
        raise EndpointError(f"endpoint {text!r}: socket {sock!r} not one of {tuple(SOCKET_TYPES)} (expected {GRAMMAR})")
    if how not in ("bind", "connect"):
        raise EndpointError(f"endpoint {text!r}: {how!r} must be 'bind' or 'connect' (expected {GRAMMAR})")
    transport, sep, rest = address.partition("://")
    if not sep or transport not in TRANSPORTS or not rest:
        raise EndpointError(f"endpoint {text!r}: address must be ipc://PATH, tcp://HOST:PORT or inproc://NAME (expected {GRAMMAR})")
    if transport == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not port.isdigit() or not (0 < int(port) < 65536) or not host:
            raise EndpointError(f"endpoint {text!r}: tcp address must be HOST:PORT with a port in 1..65535")
        if how == "bind" and not is_loopback(host) and not allow_public_bind:
            raise EndpointError(f"endpoint {text!r}: binding tcp to {host!r} exposes the stream beyond this host; "
                                f"bind to 127.0.0.1 or set pipeline.allow_public_bind: true")
    return Endpoint(socket=sock, bind=how == "bind", address=address)


def open_socket(ctx: zmq.Context, ep: Endpoint, sndhwm: int = Defaults.SNDHWM,
                rcvhwm: int = Defaults.RCVHWM, curve: CurveKeys | None = None) -> zmq.Socket:
    sock = ctx.socket(SOCKET_TYPES[ep.socket])
    if curve is not None:
        curve.apply(sock)
    sock.setsockopt(zmq.LINGER, Defaults.LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if ep.socket == "sub":
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    if ep.transport == "ipc" and ep.bind:
        # A stale socket file from a killed run would make bind fail with "Address in use".
        import os
        path = ep.address[len("ipc://"):]
        if os.path.exists(path):
            os.unlink(path)
    try:
        (sock.bind if ep.bind else sock.connect)(ep.address)
    except zmq.ZMQError as e:
        sock.close(0)
        raise EndpointError(f"endpoint {ep}: {'bind' if ep.bind else 'connect'} failed: {e}") from None
    return sock


class PacketSender:
    """Sends packets on a push or pub socket.

    block=True (lossless): waits for room (the receiver's HWM pushes back) while `keep_trying()`
    says so. block=False (live): waits at most LIVE_SEND_WAIT_MS, then drops and counts the
    message. A live receiver drains its socket continuously (and drops the *oldest* itself), so
    that wait only runs out when the receiver is gone or stuck. A pub socket never blocks:
    ZeroMQ drops for slow subscribers beyond PUB_SNDHWM.
    """

    def __init__(self, ctx: zmq.Context, ep: Endpoint, block: bool, name: str = "",
                 curve: CurveKeys | None = None, max_fps: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.endpoint, self.block, self.name = ep, block, name or str(ep)
        hwm = Defaults.PUB_SNDHWM if ep.socket == "pub" else Defaults.SNDHWM
        self.sock = open_socket(ctx, ep, sndhwm=hwm, curve=curve)
        self.watch = HandshakeWatch(self.sock, self.name) if curve is not None and curve.server else None
        # max_fps > 0 (the live view's feed): packets closer together than 1/max_fps are skipped
        # before encoding, so a preview costs the pipeline at most max_fps sends a second.
        self.min_interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self.clock = clock
        self._next_at: float | None = None
        self.sent = 0
        self.dropped = 0
        self.skipped = 0

    @property
    def rejected(self) -> int:
        """Peers refused by CURVE (binding sockets with keys; 0 otherwise)."""
        return self.watch.rejected if self.watch is not None else 0

    def send(self, packet: Packet, keep_trying: Callable[[], bool] = lambda: True) -> bool:
        """True if the packet was queued. EOS packets are always sent blocking (never dropped)."""
        if self.min_interval_s and not packet.is_eos:
            # A schedule, not a gap to the last send: frames that come at the cap with jitter
            # (10 fps camera, 10 fps cap) all pass, and the long-run rate never exceeds max_fps.
            now = self.clock()
            if self._next_at is not None and now < self._next_at:
                self.skipped += 1
                return False
            base = now if self._next_at is None else max(self._next_at, now - self.min_interval_s)
            self._next_at = base + self.min_interval_s
        frames = encode(packet)
        if self.endpoint.socket == "pub":
            blocking, give_up = False, 0.0
        elif self.block or packet.is_eos:
            blocking, give_up = True, float("inf")
        else:
            blocking, give_up = True, time.monotonic() + Defaults.LIVE_SEND_WAIT_MS / 1000.0
        while True:
            try:
                self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                self.sent += 1
                return True
            except zmq.Again:
                if not blocking or not keep_trying() or time.monotonic() > give_up:
                    self.dropped += 1
                    return False
                # Wait for room without spinning; poll wakes as soon as the peer drains.
                self.sock.poll(Defaults.POLL_MS, zmq.POLLOUT)

    def close(self, linger_ms: int = Defaults.LINGER_MS) -> None:
        """Close; `linger_ms` > 0 lets already-queued messages (an end-of-stream) go out first."""
        if self.watch is not None:
            self.watch.close()
        self.sock.close(linger_ms)


class PacketReceiver:
    """Receives packets from a pull or sub socket with a queue policy (see module docstring).

    get(timeout_s) -> Packet | None. Corrupt or wrong-version messages are counted in
    `corrupt`, logged once per distinct reason, and skipped: they never stop the loop.
    """

    def __init__(self, ctx: zmq.Context, ep: Endpoint, policy: str, name: str = "",
                 queue_len: int = Defaults.DROP_QUEUE_LEN, curve: CurveKeys | None = None):
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r} not one of {POLICIES}")
        self.endpoint, self.policy, self.name = ep, policy, name or str(ep)
        self.received = 0
        self.dropped = 0
        self.corrupt = 0
        self.last_corrupt_reason = ""
        self._seen_reasons: set[str] = set()
        self.sock = open_socket(ctx, ep, curve=curve)
        self.watch = HandshakeWatch(self.sock, self.name) if curve is not None and curve.server else None
        self._closed = threading.Event()
        if policy == "drop_oldest":
            self._queue: collections.deque[Packet] = collections.deque()
            self._queue_len = max(1, queue_len)
            self._cv = threading.Condition()
            self._thread = threading.Thread(target=self._drain, name=f"recv-{self.name}", daemon=True)
            self._thread.start()

    # -- shared -------------------------------------------------------------------------------
    def _recv_now(self) -> Packet | None:
        """One message from the socket (caller polled); None if it was corrupt."""
        frames = self.sock.recv_multipart(copy=False)
        try:
            pkt = decode(frames)
        except CodecError as e:
            self.corrupt += 1
            self.last_corrupt_reason = str(e)
            if str(e) not in self._seen_reasons and len(self._seen_reasons) < 100:
                self._seen_reasons.add(str(e))
                log.warning("%s: skipped a corrupt message (%s)", self.name, e)
            return None
        self.received += 1
        return pkt

    @property
    def rejected(self) -> int:
        """Peers refused by CURVE (binding sockets with keys; 0 otherwise)."""
        return self.watch.rejected if self.watch is not None else 0

    @property
    def depth(self) -> int:
        """Packets waiting in this receiver's own queue (drop_oldest only; 0 for block)."""
        return len(self._queue) if self.policy == "drop_oldest" else 0

    # -- drop_oldest --------------------------------------------------------------------------
    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                if not self.sock.poll(Defaults.POLL_MS, zmq.POLLIN):
                    continue
                pkt = self._recv_now()
            except zmq.ZMQError:
                if self._closed.is_set():
                    return
                raise
            if pkt is None:
                continue
            with self._cv:
                if len(self._queue) >= self._queue_len:
                    # Drop the oldest *frame*; an EOS in the queue must survive.
                    for i, old in enumerate(self._queue):
                        if not old.is_eos:
                            del self._queue[i]
                            self.dropped += 1
                            break
                self._queue.append(pkt)
                self._cv.notify()

    # -- public -------------------------------------------------------------------------------
    def get(self, timeout_s: float) -> Packet | None:
        if self.policy == "drop_oldest":
            with self._cv:
                if not self._queue:
                    self._cv.wait(timeout_s)
                return self._queue.popleft() if self._queue else None
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.sock.poll(left_ms, zmq.POLLIN):
                return None
            pkt = self._recv_now()
            if pkt is not None or time.monotonic() >= deadline:
                return pkt

    def close(self) -> None:
        self._closed.set()
        if self.policy == "drop_oldest":
            self._thread.join(timeout=1.0)
        if self.watch is not None:
            self.watch.close()
        self.sock.close(0)
