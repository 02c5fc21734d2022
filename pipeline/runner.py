"""The runner: starts the graph's nodes, watches them, stops them, and reports.

One shutdown path. SIGINT, SIGTERM, --duration and --max-frames all do the same thing: the
sources are told to stop, they send end-of-stream, every stage forwards it, the recorder
finalises its files, every node exits 0, and the run exits 0. If end-of-stream has not drained
within `pipeline.shutdown_timeout_s`, the remaining nodes are stopped (sinks still finalise in
stop()) and then killed; a run that needed killing exits non-zero saying so.

A failed node (exception in start()/process(), or a process that died) stops the run at once:
every other node is stopped, nothing is left running, and the run exits 1 with a one-line
reason naming the node. Sources and sinks are the exception while their restart budget lasts
(`pipeline.restart`, RestartBudget): a crashed camera or recorder is started again after a
backoff, logged and counted, and the run goes on. Worker processes also die with the runner (PR_SET_PDEATHSIG), so even
a SIGKILLed runner leaves no orphans.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import zmq

from pipeline.graph import NodeSpec
from pipeline.telemetry import NodeView, status_line, summary_table

log = logging.getLogger("pipeline.runner")

REPO_ROOT = Path(__file__).resolve().parents[1]
HURRY_KILL_S = 15.0     # after a second stop request: time for the frame in progress and stop() before SIGKILL
GO_LEAD_S = 0.3         # sources start their clocks this long after the go signal is sent
KILL_GRACE_S = 3.0      # after the drain deadline: how long stop()/finalise may take before SIGKILL


RESTARTABLE_ROLES = ("source", "sink")   # registration and fusion hold state a restart would lose


class RestartBudget:
    """At most `max` restarts per node within a sliding `window_s`; the wait before a restart
    doubles with each restart still in the window (backoff_s, 2*backoff_s, ... up to backoff_max_s).
    `clock` is injectable (tests)."""

    def __init__(self, max: int = 3, window_s: float = 60.0, backoff_s: float = 0.5,
                 backoff_max_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.max, self.window_s = max, window_s
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.clock = clock
        self._times: dict[str, list[float]] = {}

    def _recent(self, name: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._times.get(name, []) if now - t < self.window_s]
        self._times[name] = kept
        return kept

    def take(self, name: str) -> float | None:
        """Book a restart of `name` now: the backoff to wait, in seconds, or None when the budget
        of `max` restarts within `window_s` is used up."""
        recent = self._recent(name)
        if len(recent) >= self.max:
            return None
        recent.append(self.clock())
        return min(self.backoff_s * 2 ** (len(recent) - 1), self.backoff_max_s)


@dataclass
class RunResult:
    exit_code: int
    reason: str                       # one line; "" on success
    views: dict[str, NodeView]
    elapsed_s: float
    summary: str = ""
    pids: list[int] = field(default_factory=list)   # worker process ids (process mode)
    latency_node: str = ""            # the node whose output latency "capture -> out" measures

    def to_json_dict(self) -> dict:
        """What --summary-json writes: exit code, reason, and every node's last stats."""
        from pipeline.telemetry import percentiles
        lat = self.views.get(self.latency_node)
        p50, p99 = percentiles(lat.latencies) if lat else (None, None)
        return {"exit_code": self.exit_code, "reason": self.reason, "elapsed_s": round(self.elapsed_s, 3),
                "latency_ms": {"p50": p50, "p99": p99, "n": len(lat.latencies) if lat else 0},
                "nodes": {name: {**{k: v for k, v in view.last.items() if k != "lat_ms"},
                                 "avg_fps": round(view.avg_fps(), 3), "restarts": view.restarts,
                                 "totals": {k: view.total(k) for k in ("in", "out")}, "files": view.files()}
                          for name, view in self.views.items()}}

    def stage(self, name: str) -> dict:
        """The last stats message of a node ({} if it never reported)."""
        v = self.views.get(name)
        return v.last if v else {}


class _Node:
    """One running node: a process or a thread, with a uniform stop/kill/poll surface."""

    def __init__(self, spec: dict, mode: str, ctx: zmq.Context):
        self.name = spec["name"]
        self.spec = spec
        self.incarnation = int(spec.get("incarnation", 0))   # 0, then +1 per restart
        self.started_at = time.monotonic()
        self.mode = mode
        self.exit_code: int | None = None
        self.stop_sent = False
        self.ready = False
        self.done_msg = False
        if mode == "process":
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
            env.setdefault("OMP_NUM_THREADS", "1")   # stages share the CPU; one BLAS thread each
            # cwd stays the caller's: relative output paths mean what the user meant.
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.worker"], stdin=subprocess.PIPE,
                                         env=env, start_new_session=True)
            self.proc.stdin.write(json.dumps(spec).encode())
            self.proc.stdin.close()
            self.pid = self.proc.pid
        else:
            from pipeline.worker import run_node
            self.stop_evt, self.go_evt, self.hurry_evt = threading.Event(), threading.Event(), threading.Event()
            self._rc: list[int] = []

            def body() -> None:
                try:
                    self._rc.append(run_node(spec, ctx, self.stop_evt, self.go_evt, self.hurry_evt))
                except BaseException:
                    self._rc.append(1)
                    raise
            self.thread = threading.Thread(target=body, name=f"node-{self.name}", daemon=True)
            self.thread.start()
            self.pid = os.getpid()

    def poll(self) -> int | None:
        if self.exit_code is None:
            if self.mode == "process":
                self.exit_code = self.proc.poll()
            elif not self.thread.is_alive():
                self.exit_code = self._rc[0] if self._rc else 1
        return self.exit_code

    def _signalable(self) -> bool:
        # A node that said "done" is exiting on its own; do not signal it on its way out.
        return self.poll() is None and not self.done_msg

    def _tell(self, sig: signal.Signals, *flags: str) -> None:
        """A signal to the worker process, or the same flags (attribute names) set on the worker thread."""
        if self.mode == "process":
            if self._signalable():
                self.proc.send_signal(sig)
        else:
            for name in flags:
                getattr(self, name).set()

    def go(self) -> None:
        self._tell(signal.SIGUSR1, "go_evt")

    def stop(self) -> None:
        self.stop_sent = True
        self._tell(signal.SIGTERM, "stop_evt")

    def hurry(self) -> None:
        """Stop now: no waiting for end-of-stream (stop() still runs, so sinks finalise)."""
        self.stop_sent = True
        self._tell(signal.SIGUSR2, "hurry_evt", "stop_evt")

    def kill(self) -> None:
        if self.mode == "process" and self.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.poll()
        # A thread cannot be killed; its loop checks stop_evt every READ_SLICE_S.


class Runner:
    """Runs a list of node specs (see pipeline.graph.build_specs) to completion."""

    def __init__(self, specs: list[NodeSpec], *, mode: str = "process", duration_s: float = 0.0,
                 status_interval_s: float = 1.0, startup_timeout_s: float = 60.0,
                 shutdown_timeout_s: float = 10.0, stream: str = "site0", log_level: str = "info",
                 status_out: TextIO | None = sys.stderr, handle_signals: bool = True,
                 on_event: Callable[[dict], None] | None = None, restart: RestartBudget | None = None,
                 stats_interval_s: float = 1.0, latency_node: str = ""):
        self.specs = specs
        # latency "capture -> out" is measured at this node's output: the last stage by default
        self.latency_node = latency_node or next((s.name for s in reversed(specs) if s.role == "stage"), "")
        self.restart = restart or RestartBudget(max=0)
        self.stats_interval_s = stats_interval_s
        # What the ops server reads from other threads (snapshot()): replaced, never mutated in place.
        self._nodes: dict[str, _Node] = {}
        self._pending_restart: dict[str, float] = {}   # node -> monotonic time it restarts at
        self.phase = "starting"                        # starting | running | stopping | ended
        self.go_at: float | None = None
        self.mode = mode
        self.duration_s = duration_s
        self.status_interval_s = status_interval_s
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.stream = stream
        self.log_level = log_level
        self.status_out = status_out
        self.handle_signals = handle_signals
        self.on_event = on_event
        self._signal: str | None = None
        self._hurry = False
        self.views = {s.name: NodeView(s.name) for s in specs}

    # -- signals --------------------------------------------------------------------------------
    def request_stop(self, why: str = "stop requested") -> None:
        """Ask for the graceful shutdown (what SIGINT/SIGTERM do); safe from any thread."""
        if self._signal is None:
            self._signal = why
        else:
            # A second Ctrl-C: do not wait for the sources' end-of-stream to drain; every stage
            # stops now (sinks still finalise in stop()).
            self._hurry = True

    def snapshot(self) -> dict[str, dict]:
        """Per node: alive, pid, restarts, restarting (a restart is scheduled), exit_code and
        its last stats message. Safe from any thread (the ops server reads it)."""
        nodes, pending = dict(self._nodes), dict(self._pending_restart)
        out = {}
        for s in self.specs:
            n, v = nodes.get(s.name), self.views[s.name]
            rc = n.exit_code if n is not None else None
            out[s.name] = {"role": s.role, "alive": n is not None and rc is None, "ready": bool(n and n.ready),
                           "pid": n.pid if n is not None and self.mode == "process" else None,
                           "exit_code": rc, "restarts": v.restarts, "restarting": s.name in pending,
                           "started_at": n.started_at if n is not None else None, "last": v.last,
                           "totals": {k: v.total(k) for k in ("in", "out", "corrupt", "auth_rejected")} | {"drops": v.drops}}
        return out

    def _install_signals(self) -> dict:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))
        return old

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> RunResult:
        ctx = zmq.Context()
        old_handlers = self._install_signals()
        control = ctx.socket(zmq.PULL)
        control.setsockopt(zmq.LINGER, 0)
        import tempfile
        ctrl_dir = tempfile.mkdtemp(prefix="smokefusion-ctl-")
        self._go_file = f"{ctrl_dir}/go"
        if self.mode == "process":
            ctrl_ep = f"ipc://{ctrl_dir}/control.sock"
        else:
            ctrl_ep = f"inproc://control-{id(self):x}"
        control.bind(ctrl_ep)
        nodes: dict[str, _Node] = {}
        self._nodes = nodes
        self._ctx = ctx
        t0 = time.monotonic()
        reason, code = "", 0
        try:
            for s in self.specs:
                d = s.to_dict()
                # The nodes of a camera pair (pairs: in the config) carry that pair's stream name.
                d.update(control=f"push+connect:{ctrl_ep}", go_file=self._go_file,
                         runner_pid=os.getpid(), stream=s.extra.get("stream") or self.stream,
                         status_interval_s=min(self.status_interval_s, self.stats_interval_s),
                         drain_s=self.shutdown_timeout_s, log_level=self.log_level)
                nodes[s.name] = _Node(d, self.mode, ctx)
                if self.mode == "process":
                    log.info("started %s (pid %d)", s.name, nodes[s.name].pid)
            code, reason, t0 = self._supervise(nodes, control)
        finally:
            self.phase = "ended"
            self._pending_restart = {}
            # Whatever happened, nothing is left running.
            for n in nodes.values():
                if n.poll() is None:
                    n.stop()
            deadline = time.monotonic() + KILL_GRACE_S
            while any(n.poll() is None for n in nodes.values()) and time.monotonic() < deadline:
                self._drain_control(control, nodes, 0.05)
            for n in nodes.values():
                n.kill()
            self._drain_control(control, nodes, 0.05)
            control.close(0)
            # destroy(): a socket a failed node never closed must not make term() wait forever.
            # (In thread mode a node thread that never ended may still use its sockets: leave them.)
            if self.mode == "process" or all(n.poll() is not None for n in nodes.values()):
                ctx.destroy(linger=0)
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            for d in {s.extra.get("ipc_dir_auto") for s in self.specs} - {None, ""}:
                shutil.rmtree(d, ignore_errors=True)     # the run's own socket files
            shutil.rmtree(ctrl_dir, ignore_errors=True)
        elapsed = time.monotonic() - t0
        result = RunResult(exit_code=code, reason=reason, views=self.views, elapsed_s=elapsed,
                           pids=[n.pid for n in nodes.values()] if self.mode == "process" else [],
                           latency_node=self.latency_node)
        result.summary = summary_table(self.views, self.latency_node, elapsed)
        return result

    def _drain_control(self, control: zmq.Socket, nodes: dict[str, _Node], timeout_s: float) -> list[dict]:
        msgs = []
        if control.poll(int(timeout_s * 1000)):
            while True:
                try:
                    raw = control.recv_string(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = json.loads(raw)
                except json.JSONDecodeError:
                    log.warning("runner: unreadable control message ignored")
                    continue
                name = msg.get("node")
                if name in nodes and msg.get("inc", 0) != nodes[name].incarnation:
                    continue    # the last words of a node that has since been restarted
                if name in self.views and msg.get("type") == "stats":
                    self.views[name].update(msg)
                if name in nodes:
                    if msg.get("type") == "ready":
                        nodes[name].ready = True
                    if msg.get("type") == "done":
                        nodes[name].done_msg = True
                if self.on_event is not None:
                    self.on_event(msg)
                msgs.append(msg)
        return msgs

    def _print_status(self, elapsed: float, final: bool = False) -> None:
        if self.status_out is None:
            return
        for v in self.views.values():
            v.refresh_fps()
        line = status_line(elapsed, self.views, self.latency_node)
        tty = hasattr(self.status_out, "isatty") and self.status_out.isatty()
        self.status_out.write(("\r" + line + "\x1b[K" if tty else line + "\n") + ("\n" if final and tty else ""))
        self.status_out.flush()

    def _restartable(self, name: str, nodes: dict[str, _Node]) -> bool:
        return nodes[name].spec["role"] in RESTARTABLE_ROLES and self.restart.max > 0 and self.phase == "running"

    def _restart_due(self, nodes: dict[str, _Node], now: float) -> None:
        """Start the nodes whose restart backoff has passed (all of them at once when stopping:
        a restarted source must still send its end-of-stream, a recorder must still finalise)."""
        for name, at in list(self._pending_restart.items()):
            if now < at and self.phase == "running":
                continue
            old = nodes[name]
            self.views[name].carry()
            new = _Node({**old.spec, "incarnation": old.incarnation + 1}, self.mode, self._ctx)
            new.restarted = True
            nodes[name] = new
            self._pending_restart = {k: v for k, v in self._pending_restart.items() if k != name}
            log.warning("restarted %s%s (restart %d)", name,
                        f" (pid {new.pid})" if self.mode == "process" else "", self.views[name].restarts)
        for n in nodes.values():
            # A restarted source gets its go (or, when the run is stopping, its stop) once ready;
            # a signal before the worker installed its handlers would kill it.
            if getattr(n, "restarted", False) and n.ready and not getattr(n, "released", False):
                n.released = True
                if n.spec["role"] == "source":
                    (n.stop if self.phase != "running" else n.go)()

    def _failure(self, nodes: dict[str, _Node], control: zmq.Socket, msgs: list[dict]) -> str | None:
        """The one-line reason the run fails, from error messages and ended nodes; None if none.
        A restartable node's failure schedules its restart instead, while the budget lasts."""
        for m in msgs:
            if m.get("type") == "error":
                if m.get("node") in nodes and self._restartable(m["node"], nodes) and m.get("restart") is not False:
                    self._reported[m["node"]] = m.get("reason", "unknown error")   # restarted once it exits
                    continue
                return f"stage {m['node']} failed: {m.get('reason', 'unknown error')}"
        for n in list(nodes.values()):
            rc = n.poll()
            if rc in (None, 0) or n.name in self._pending_restart:
                continue
            why = self._reported.pop(n.name, None)
            if why is None:
                # Give its error message a moment to arrive; it says more than an exit code.
                for m in self._drain_control(control, nodes, 0.3):
                    if m.get("type") == "error" and m.get("node") == n.name:
                        why = m.get("reason")
            if why is None:
                why = f"process ended ({f'killed by signal {-rc}' if rc < 0 else f'exit status {rc}'})"
            if self._restartable(n.name, nodes):
                delay = self.restart.take(n.name)
                if delay is not None:
                    log.warning("stage %s failed: %s; restarting it in %.1f s", n.name, why, delay)
                    self._pending_restart = {**self._pending_restart, n.name: time.monotonic() + delay}
                    continue
                return (f"stage {n.name} failed: {why} (restart budget used up: {self.restart.max} "
                        f"restarts within {self.restart.window_s:g}s)")
            return f"stage {n.name} failed: {why}"
        return None

    def _await_ready(self, nodes: dict[str, _Node], control: zmq.Socket) -> tuple[int, str] | None:
        """Wait until every node is up and ready (sources not yet reading); (exit code, reason)
        when the run ends before that (a failure, a stop request, the startup timeout)."""
        deadline = time.monotonic() + self.startup_timeout_s
        while not all(n.ready for n in nodes.values()):
            failure = self._failure(nodes, control, self._drain_control(control, nodes, 0.1))
            if failure:
                return 1, failure
            if self._signal:
                return 0, ""
            if time.monotonic() > deadline:
                late = [n.name for n in nodes.values() if not n.ready]
                return 1, f"startup timed out after {self.startup_timeout_s:.0f}s waiting for {', '.join(late)}"
        return None

    def _begin_stop(self, nodes: dict[str, _Node], why: str) -> None:
        """The one shutdown path: the sources are told to stop and send end-of-stream."""
        log.info("stopping: %s", why)
        self.phase = "stopping"
        sources = [n for n in nodes.values() if n.spec["role"] == "source"]
        for n in sources:
            if not getattr(n, "restarted", False) or getattr(n, "released", False):
                n.stop()     # a restarted source not yet ready is stopped once it is
        if not sources:      # --only without sources: drain our own nodes
            for n in nodes.values():
                n.stop()

    def _supervise(self, nodes: dict[str, _Node], control: zmq.Socket) -> tuple[int, str, float]:
        self._reported: dict[str, str] = {}   # restartable node -> the error it sent before exiting
        early = self._await_ready(nodes, control)
        if early is not None:
            return (*early, time.monotonic())
        # Go: every source starts its clock at the same instant (CLOCK_MONOTONIC is host-wide),
        # a moment from now, so a busy CPU delivering the signal late does not skew the cameras.
        t0 = time.monotonic() + GO_LEAD_S
        Path(self._go_file).write_text(repr(t0))
        self.go_at = t0
        for n in nodes.values():
            if n.spec["role"] == "source":
                n.go()
        self.phase = "running"
        last_status = t0
        stopping_since: float | None = None
        hurried_since: float | None = None
        forced: list[str] = []
        while True:
            msgs = self._drain_control(control, nodes, 0.1)
            now = time.monotonic()
            failure = self._failure(nodes, control, msgs)
            if failure:
                return 1, failure, t0
            if stopping_since is None:
                why = self._signal
                if self.duration_s and now - t0 >= self.duration_s:
                    why = f"duration {self.duration_s:g}s reached"
                if any(m.get("type") == "limit" for m in msgs):
                    why = "max frames reached"
                if why:
                    stopping_since = now
                    self._begin_stop(nodes, why)
            self._restart_due(nodes, now)
            if self._hurry and stopping_since is not None:
                self._hurry = False
                hurried_since = now
                log.info("second stop request: stopping every stage now")
                for n in nodes.values():
                    if n.poll() is None:
                        n.hurry()
            if hurried_since is not None and now - hurried_since > HURRY_KILL_S:
                killed = [n.name for n in nodes.values() if n.poll() is None]
                for n in nodes.values():
                    n.kill()
                if killed:
                    return 1, f"shutdown: {', '.join(killed)} did not stop within {HURRY_KILL_S:g}s " \
                              f"of the second stop request and were killed", t0
                hurried_since = None
            if all(n.poll() is not None for n in nodes.values()) and not self._pending_restart:
                # Every node ended by itself or drained; collect their last words.
                self._drain_control(control, nodes, 0.2)
                failure = self._failure(nodes, control, [])
                if failure:
                    return 1, failure, t0
                if forced:
                    return 1, f"shutdown timed out: {', '.join(forced)} did not drain within " \
                              f"{self.shutdown_timeout_s:g}s and were stopped", t0
                self._print_status(now - t0, final=True)
                return 0, "", t0
            if stopping_since is not None and now - stopping_since > self.shutdown_timeout_s and not forced:
                forced = [n.name for n in nodes.values() if n.poll() is None]
                for n in nodes.values():
                    if n.poll() is None:
                        n.stop()
            if stopping_since is not None and now - stopping_since > 2 * self.shutdown_timeout_s + KILL_GRACE_S:
                for n in nodes.values():
                    n.kill()
            if now - last_status >= self.status_interval_s:
                last_status = now
                self._print_status(now - t0)
