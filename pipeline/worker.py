"""The loop that runs one node of the graph: sockets around a stage, plus telemetry.

A node is a source (read() -> send), a stage (receive -> process() -> send) or a sink
(receive -> process()). The same `run_node` runs in a thread (tests, `pipeline.mode: thread`)
or as the body of its own OS process:

    python -m pipeline.worker < spec.json     (the runner does this; spec from pipeline.graph)

Error policy: an exception in start()/read()/process()/stop() is fatal: the node reports a
one-line reason on the control channel and exits with status 1. Telemetry failures only warn.

Signals (process mode): SIGTERM = stop, SIGUSR1 = go (sources start reading), SIGUSR2 = stop
now without awaiting end-of-stream, SIGINT ignored (the runner decides). Their handlers set
`SignalFlag`s, never a threading.Event: see SignalFlag for why.

Stop semantics (the one shutdown path):
- `stop` set on a source: it sends end-of-stream downstream and exits 0.
- `stop` set on a stage/sink: it keeps working until end-of-stream arrives from every upstream,
  or until `drain_s` has passed, then stops its stage (sinks finalise in stop()) and exits 0.
A stage/sink exits by itself after forwarding end-of-stream.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any

import zmq

from pipeline.batching import BatchConfig, MicroBatcher
from pipeline.graph import instantiate
from pipeline.packet import Packet
from pipeline.stage import check_outputs
from pipeline.security import Authenticator, CurveKeys, SecurityError, keys_for, needs_curve
from pipeline.telemetry import NodeStats
from pipeline.transport import Defaults, PacketReceiver, PacketSender, parse_endpoint

log = logging.getLogger("pipeline.worker")

READ_SLICE_S = 0.1   # longest single wait on a source or socket; stop flags are checked this often


class SignalFlag:
    """A threading.Event look-alike (set/clear/is_set/wait) that a signal handler may set.

    A Python signal handler runs in the main thread, between two bytecodes of whatever the main
    thread is doing. threading.Event.set() takes the event's internal (non-reentrant) lock, and
    Event.wait() holds that same lock while it runs Python code before and after blocking; a
    SIGUSR1 (go) handled in that window calls set() on a lock its own thread holds, and the
    process deadlocks for good. It then handles no further signal (SIGTERM and SIGUSR2 run
    their handlers but return into the stuck acquire), so a source that never produced a
    frame had to be SIGKILLed. A busy CPU, preempting the main thread inside that window,
    makes it likely enough to hit a CI run now and then.

    set() here takes no lock: it stores a bool and writes a byte to a non-blocking pipe;
    wait() sleeps in poll() on that pipe, so a set() from the handler wakes it at once."""

    def __init__(self) -> None:
        self._flag = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._poller = select.poll()      # poll, not select: no FD_SETSIZE limit
        self._poller.register(self._r, select.POLLIN)

    def set(self) -> None:
        self._flag = True
        try:
            os.write(self._w, b"\0")
        except OSError:        # pipe full (a wakeup is already pending) or closed at exit
            pass

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """True as soon as the flag is set; False if `timeout` seconds passed without it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            # An interrupted poll() is retried after the handler ran (PEP 475); the byte the
            # handler wrote then ends it at once.
            if self._poller.poll(None if left is None else max(1, int(left * 1000 + 0.999))):
                try:
                    while os.read(self._r, 4096):
                        pass
                except OSError:    # drained (EAGAIN)
                    pass
        return self._flag


def install_signal_handlers() -> tuple[SignalFlag, SignalFlag, SignalFlag]:
    """(stop, go, hurry) flags, set by SIGTERM, SIGUSR1 and SIGUSR2; SIGINT is ignored (Ctrl-C
    reaches the whole terminal process group; the runner alone decides). Main thread only."""
    stop, go, hurry = SignalFlag(), SignalFlag(), SignalFlag()

    def on_hurry(*_: Any) -> None:
        hurry.set()
        stop.set()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: go.set())
    signal.signal(signal.SIGUSR2, on_hurry)
    return stop, go, hurry


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _Control:
    """JSON messages to the runner. Never blocks: a full control queue loses a stats message."""

    def __init__(self, ctx: zmq.Context, endpoint: str, node: str, incarnation: int = 0):
        self.node = node
        self.incarnation = incarnation      # which start of this node (restarts count up)
        self.sock = ctx.socket(zmq.PUSH)
        try:
            self.sock.setsockopt(zmq.LINGER, Defaults.CONTROL_LINGER_MS)
            self.sock.setsockopt(zmq.SNDHWM, Defaults.CONTROL_SNDHWM)
            self.sock.connect(parse_endpoint(endpoint).address)
        except Exception:
            self.sock.close(0)
            raise

    def send(self, kind: str, **fields: Any) -> None:
        try:
            self.sock.send_string(json.dumps({"node": self.node, "type": kind, "inc": self.incarnation, **fields},
                                             default=str), zmq.NOBLOCK)
        except (zmq.ZMQError, TypeError, ValueError) as e:
            log.warning("%s: telemetry message %r lost (%s)", self.node, kind, e)

    def close(self) -> None:
        self.sock.close()


def _stage_stats(stage: Any) -> dict:
    """The stage's stats(), or {} with a warning when it fails (telemetry only warns)."""
    try:
        st = dict(stage.stats())
        json.dumps(st, default=str)
    except Exception as e:
        log.warning("stats() failed: %s", one_line(e))
        return {}
    return st


def _curve_keys(security: dict, ep) -> CurveKeys | None:
    """The CURVE keys for one endpoint, or None where it runs in the clear."""
    # pipeline.security decides per endpoint; the config check already refused missing keys.
    if not security or not needs_curve(ep.address, security.get("curve", "auto")):
        return None
    try:
        return keys_for(security, ep.bind)
    except SecurityError:
        if security.get("insecure"):
            return None
        raise


def _authenticator(spec: dict, ctx: zmq.Context) -> Authenticator | None:
    """An Authenticator (lets in only allowed client keys) when an endpoint this node binds
    needs CURVE, else None."""
    security = spec.get("security") or {}
    eps = [parse_endpoint(i["endpoint"], True) for i in spec["inputs"]] + \
          [parse_endpoint(o["endpoint"], True) for o in spec["outputs"]]
    if any(ep.bind and _curve_keys(security, ep) is not None for ep in eps):
        return Authenticator(ctx, security["allowed_clients"])
    return None


def _open_sockets(spec: dict, ctx: zmq.Context, receivers: list[PacketReceiver],
                  senders: list[PacketSender]) -> None:
    """One receiver per input and one sender per output, appended as each opens (so the caller
    closes those that opened when a later one fails)."""
    name = spec["name"]
    security = spec.get("security") or {}
    for i in spec["inputs"]:
        ep = parse_endpoint(i["endpoint"], True)
        receivers.append(PacketReceiver(ctx, ep, i["policy"], name=f"{name}<-{i.get('name', '')}",
                                        queue_len=i.get("queue_len", 2), curve=_curve_keys(security, ep)))
    for o in spec["outputs"]:
        ep = parse_endpoint(o["endpoint"], True)
        senders.append(PacketSender(ctx, ep, block=o["block"], name=f"{name}->{o.get('name', '')}",
                                    curve=_curve_keys(security, ep), max_fps=float(o.get("max_fps") or 0.0)))


def _wait_for_go(go: threading.Event | SignalFlag, stop: threading.Event | SignalFlag) -> None:
    """Block until go or stop is set, checking stop every READ_SLICE_S."""
    while not go.wait(READ_SLICE_S):
        if stop.is_set():
            break


def _source_at_go(spec: dict, source: Any) -> Any:
    """The source to start now, with the runner's go time as its clock origin.

    Sources with a media clock get the go time the runner wrote as their origin (a new
    instance), so both cameras' timestamps (and a synthetic world's time) agree exactly however
    the two processes are scheduled; others (live cameras) wait for that time and start as they are."""
    try:
        go_at = float(open(spec["go_file"]).read())
    except (OSError, ValueError, KeyError):
        go_at = time.monotonic()
    config = getattr(source, "config", None)
    if dataclasses.is_dataclass(config) and getattr(config, "clock_origin_mono", 0) is None:
        return instantiate(spec, clock_origin_mono=go_at)
    time.sleep(min(max(0.0, go_at - time.monotonic()), 5.0))
    return source


def _report_failure(control: _Control, name: str, e: Exception) -> None:
    """Send a fatal error's one-line reason to the runner (call inside the except block)."""
    log.debug("%s failed:\n%s", name, traceback.format_exc())
    # An error that says a restart cannot help (a full disk) ends the run at once.
    control.send("error", reason=one_line(e),
                 **({"restart": False} if getattr(e, "restartable", True) is False else {}))


def _stop_stage(stage: Any, name: str, status: int, control: _Control) -> int:
    """Run stage.stop(); returns the exit status, 1 when stop() fails on an otherwise clean exit."""
    try:
        stage.stop()
    except Exception as e:
        if status == 0:
            status = 1
            control.send("error", reason=f"stop(): {one_line(e)}")
        else:
            log.warning("%s: stop() after failure also failed: %s", name, one_line(e))
    return status


def _close_sockets(receivers: list[PacketReceiver], senders: list[PacketSender],
                   auth: Authenticator | None, clean: bool) -> None:
    """Close every data socket and the authenticator."""
    for r in receivers:
        r.close()
    for s in senders:
        # A clean exit just queued end-of-stream: let it leave. A failed one must not wait.
        s.close(Defaults.FLUSH_LINGER_MS if clean else 0)
    if auth is not None:
        auth.stop()


def run_node(spec: dict, ctx: zmq.Context, stop: threading.Event | SignalFlag,
             go: threading.Event | SignalFlag, hurry: threading.Event | SignalFlag | None = None) -> int:
    """Run one node until end-of-stream, stop, or failure. Returns the exit status (0 or 1).

    stop: finish gracefully (sources send end-of-stream; others drain until it arrives).
    hurry: stop now without waiting for end-of-stream (stop() still runs, sinks finalise)."""
    hurry = hurry or threading.Event()
    name, role = spec["name"], spec["role"]
    control = _Control(ctx, spec["control"], name, int(spec.get("incarnation", 0)))
    stats = NodeStats(name)
    receivers: list[PacketReceiver] = []
    senders: list[PacketSender] = []
    stage, auth = None, None
    status, started = 0, False
    try:
        stage = instantiate(spec)
        auth = _authenticator(spec, ctx)
        _open_sockets(spec, ctx, receivers, senders)
        if role != "source":
            stage.start()
            started = True
        control.send("ready", pid=os.getpid())
        if role == "source":
            _wait_for_go(go, stop)
            if not stop.is_set():
                stage = _source_at_go(spec, stage)
                stage.start()
                started = True
            _source_loop(spec, stage, receivers, senders, control, stats, stop, hurry)
        else:
            _StageLoop(spec, stage, receivers, senders, control, stats, stop, hurry).run()
    except Exception as e:
        status = 1
        _report_failure(control, name, e)
    finally:
        if stage is not None and started:
            status = _stop_stage(stage, name, status, control)
        control.send("stats", **stats.message(_stats_extra(stage, receivers, senders)))
        control.send("done", status=status)
        _close_sockets(receivers, senders, auth, status == 0)
        control.close()
    return status


def _counters(receivers: list[PacketReceiver], senders: list[PacketSender]) -> dict:
    return {"drops_in": sum(r.dropped for r in receivers), "drops_out": sum(s.dropped for s in senders),
            "corrupt": sum(r.corrupt for r in receivers), "depth": sum(r.depth for r in receivers),
            "auth_rejected": sum(x.rejected for x in (*receivers, *senders)),
            # per output, so a sink's frames can be accounted for (fused = recorded + dropped on its edge)
            "outputs": {s.name: {"sent": s.sent, "dropped": s.dropped} for s in senders}}


def _stats_extra(stage, receivers, senders) -> dict:
    extra = _counters(receivers, senders)
    st = _stage_stats(stage) if stage is not None else {}
    extra["stage"] = st
    drops = st.get("drops", 0)
    extra["drops_stage"] = int(drops) if isinstance(drops, (int, float)) else 0
    return extra


class _Reporter:
    """Sends the node's stats to the runner every status_interval_s."""

    def __init__(self, spec: dict, stage: Any, receivers, senders, control: _Control, stats: NodeStats):
        self.spec, self.stage, self.receivers, self.senders = spec, stage, receivers, senders
        self.control, self.stats = control, stats
        self.last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last < self.spec["status_interval_s"]:
            return
        self.last = now
        self.control.send("stats", **self.stats.message(_stats_extra(self.stage, self.receivers, self.senders)))


def _send_all(senders: list[PacketSender], pkt: Packet, keep_trying,
              routes: list[frozenset] | None = None) -> None:
    """Send to every output; an output with a non-empty route takes only packets of those streams
    (a camera pair's recorder behind a shared fusion stage). End-of-stream goes everywhere."""
    for i, s in enumerate(senders):
        if routes and routes[i] and not pkt.is_eos and pkt.stream not in routes[i]:
            continue
        s.send(pkt, keep_trying)


def _source_loop(spec, source, receivers, senders, control, stats, stop: threading.Event,
                 hurry: threading.Event) -> None:
    report = _Reporter(spec, source, receivers, senders, control, stats)
    eos_deadline = 0.0

    def keep_trying() -> bool:
        # Lossless sends wait for room until a stop is asked for; EOS gets until its deadline,
        # unless told to hurry.
        return not hurry.is_set() and ((not stop.is_set()) or time.monotonic() < eos_deadline)

    while True:
        report()
        if stop.is_set():
            eos_deadline = time.monotonic() + (0.0 if hurry.is_set() else spec["drain_s"])
            _send_all(senders, Packet.eos(spec["stream"], reason="stop"), keep_trying)
            return
        pkt = source.read(READ_SLICE_S)
        if pkt is None:
            continue
        if spec.get("meta") and pkt.kind == "frame":
            pkt.meta.update(spec["meta"])       # what the config says about this source (an IR camera's counts)
        if pkt.is_eos:
            eos_deadline = time.monotonic() + spec["drain_s"]
            _send_all(senders, pkt, lambda: not hurry.is_set() and time.monotonic() < eos_deadline)
            return
        _send_all(senders, pkt, keep_trying)
        stats.count_out(pkt.t_mono, pkt.meta.get("clock", "capture"))


class _TimeOrderedMerge:
    """Lossless inputs merged in capture-time order (`t_mono`).

    Files are read as fast as the pipeline takes them, so one input can run far ahead of the
    other in media time. Taking whichever packet is oldest, and waiting for an input that has
    nothing yet (its peer's bounded queue then pushes back on the faster source), keeps the two
    streams aligned so registration can pair them. An input that has ended no longer holds the
    merge back.
    """

    def __init__(self, receivers: list[PacketReceiver]):
        self.receivers = receivers
        self.heads: list[Packet | None] = [None] * len(receivers)
        self.ended = [False] * len(receivers)

    def get(self) -> Packet | None:
        for i, r in enumerate(self.receivers):
            if self.heads[i] is None and not self.ended[i]:
                self.heads[i] = r.get(0)
        waiting = [i for i in range(len(self.receivers)) if self.heads[i] is None and not self.ended[i]]
        if waiting:
            i = waiting[0]
            self.heads[i] = self.receivers[i].get(READ_SLICE_S)
            if self.heads[i] is None:
                return None          # still waiting for the lagging input (the loop checks stop flags)
        ready = [i for i in range(len(self.receivers)) if self.heads[i] is not None]
        if not ready:
            return None
        # EOS goes first: it carries no time and frees its input from holding the merge back.
        i = min(ready, key=lambda k: (not self.heads[k].is_eos, self.heads[k].t_mono))
        pkt, self.heads[i] = self.heads[i], None
        if pkt.is_eos:
            self.ended[i] = True
        return pkt


class _RoundRobin:
    """Inputs taken in turn so one busy input cannot starve another."""

    def __init__(self, receivers: list[PacketReceiver]):
        self.receivers = receivers
        self.next = 0

    def get(self) -> Packet | None:
        n = len(self.receivers)
        for k in range(n):
            r = self.receivers[(self.next + k) % n]
            pkt = r.get(0 if k < n - 1 else READ_SLICE_S)
            if pkt is not None:
                self.next = (self.next + k + 1) % n
                return pkt
        return None


class _StageLoop:
    """Receive -> process() -> send for a stage or sink, until the last upstream's end-of-stream.

    End-of-stream is handled here alone: process() never sees one; when every upstream has ended,
    what is batched runs, the stage's finish() output is sent, and one end-of-stream goes on.
    A stage that declares `batched` gets process_batch() calls of up to spec["batch"] packets, the
    oldest waiting at most spec["max_wait_ms"] for company (pipeline.batching.MicroBatcher)."""

    def __init__(self, spec, stage, receivers, senders, control, stats, stop, hurry):
        self.spec, self.stage, self.receivers, self.senders = spec, stage, receivers, senders
        self.control, self.stats, self.stop, self.hurry = control, stats, stop, hurry
        self.report = _Reporter(spec, stage, receivers, senders, control, stats)
        self.eos_needed = max(1, int(spec["expected_eos"]))
        self.eos_seen = 0
        self.max_out = int(spec.get("max_outputs") or 0)
        self.routes = [frozenset(o.get("streams") or ()) for o in spec["outputs"]]
        self.limit_hit = False
        self.drain_deadline: float | None = None
        self.batch = max(1, int(spec.get("batch") or 1))
        self.batcher = None
        if getattr(type(stage), "batched", False) and len(receivers) == 1:
            self.batcher = MicroBatcher(self._checked_batch, BatchConfig(self.batch, float(spec.get("max_wait_ms") or 0.0)))
        if len(receivers) > 1 and all(r.policy == "block" for r in receivers):
            self.source = _TimeOrderedMerge(receivers).get
        elif len(receivers) > 1:
            self.source = _RoundRobin(receivers).get
        else:
            self.source = lambda: receivers[0].get(READ_SLICE_S)

    def _checked_batch(self, packets: list[Packet]) -> list[Packet]:
        return check_outputs(self.spec["name"], self.stage.process_batch(packets))

    def keep_trying(self) -> bool:
        return not self.hurry.is_set() and (self.drain_deadline is None or time.monotonic() < self.drain_deadline)

    def emit(self, outs: list[Packet]) -> None:
        for o in outs:
            if self.limit_hit:
                return
            _send_all(self.senders, o, self.keep_trying, self.routes)
            self.stats.count_out(o.t_mono, o.meta.get("clock", "capture"))
            if self.max_out and self.stats.packets_out >= self.max_out:
                # Enough output: end the downstream now; keep draining input until upstream ends.
                self.limit_hit = True
                _send_all(self.senders, Packet.eos(self.spec["stream"], reason="max_frames"), self.keep_trying)
                self.control.send("limit", out=self.stats.packets_out)

    def ended(self, eos: Packet) -> bool:
        """Count an upstream's end-of-stream; on the last one flush, finish and forward one EOS."""
        self.eos_seen += 1
        if self.eos_seen < self.eos_needed:
            return False
        if self.batcher is not None:
            self.emit([out for _item, out in self.batcher.flush()])
        self.emit(check_outputs(self.spec["name"], self.stage.finish()))
        if not self.limit_hit:
            _send_all(self.senders, Packet.eos(self.spec["stream"], **eos.meta), self.keep_trying)
        return True

    def next_packet(self) -> Packet | None:
        if self.batcher is None:
            return self.source()
        wait = self.batcher.time_to_deadline()
        pkt = self.receivers[0].get(READ_SLICE_S if wait is None else min(READ_SLICE_S, wait))
        if pkt is None:
            self.emit([out for _item, out in self.batcher.poll()])
        return pkt

    def take(self, pkt: Packet) -> bool:
        """Process one data packet (with what has queued behind it, when batching); True at the end."""
        self.stats.packets_in += 1
        if self.limit_hit:
            return False
        if self.batcher is None:
            self.emit(check_outputs(self.spec["name"], self.stage.process(pkt)))
            if self.spec["role"] == "sink":
                # a sink's "output" is what it consumed (recorded)
                self.stats.count_out(pkt.t_mono, pkt.meta.get("clock", "capture"))
            return False
        # What has already queued joins the batch at once (no wait even with max_wait_ms 0).
        group, eos = [pkt], None
        while self.batcher.pending + len(group) < self.batch:
            more = self.receivers[0].get(0)
            if more is None:
                break
            if more.is_eos:
                eos = more
                break
            self.stats.packets_in += 1
            group.append(more)
        self.emit([out for _item, out in self.batcher.add_many(group)])
        return eos is not None and self.ended(eos)

    def run(self) -> None:
        name = self.spec["name"]
        while True:
            self.report()
            if self.stop.is_set() and self.drain_deadline is None:
                self.drain_deadline = time.monotonic() + self.spec["drain_s"]
            if self.hurry.is_set():
                log.info("%s: stopping now, as asked (end-of-stream not awaited)", name)
                return
            if self.drain_deadline is not None and time.monotonic() > self.drain_deadline:
                log.warning("%s: end-of-stream did not arrive within %.1fs of stop; stopping anyway",
                            name, self.spec["drain_s"])
                return
            pkt = self.next_packet()
            if pkt is None:
                continue
            if self.ended(pkt) if pkt.is_eos else self.take(pkt):
                return


# -- process entry ---------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the runner dies, so no stage is ever orphaned."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:   # the runner died before prctl took effect
        os._exit(1)


def main() -> int:
    # First thing: a stop asked for while the spec is still being read is kept, not fatal.
    stop, go, hurry = install_signal_handlers()
    spec = json.loads(sys.stdin.read())
    _die_with_parent(int(spec["runner_pid"]))
    logging.basicConfig(level=spec.get("log_level", "INFO").upper(),
                        format=f"%(asctime)s {spec['name']} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    ctx = zmq.Context()
    try:
        return run_node(spec, ctx, stop, go, hurry)
    finally:
        # Done: a stop signal arriving now must not turn a clean exit into "killed by signal"
        # (Python restores default handlers while it shuts down; ignored signals stay ignored).
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
        # Closed sockets keep their linger (the end-of-stream still leaves); any socket a failure
        # left open is dropped at once instead of blocking the exit.
        ctx.destroy(linger=0)


if __name__ == "__main__":
    code = main()
    # Everything is flushed and closed by now (sinks finalised in stop(), sockets drained).
    # Skipping interpreter teardown, as multiprocessing children do, keeps a loaded machine from
    # spending seconds finalising torch & co. after the work is done.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
