"""The worker's signal protocol (SIGUSR1 go, SIGTERM stop, SIGUSR2 hurry) never deadlocks.

A Python signal handler runs in the main thread between two bytecodes. With threading.Event
flags, a go signal handled while the main thread was inside go.wait() (which holds the event's
lock) deadlocked the process for good: a capture stage that never produced a frame and ignored
every later stop until the runner SIGKILLed it. Spinning in wait() puts the main thread inside
that window nearly all the time, so the old flags hang on the first few signals here.
"""
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.worker import SignalFlag

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 200

CHILD = f"""
import os, sys
from pipeline.worker import install_signal_handlers
stop, go, hurry = install_signal_handlers()
os.write(1, b"r")
for i in range({ROUNDS}):
    # Even rounds spin in wait(0) (always inside the window); odd ones block like the worker.
    while not go.wait(0 if i % 2 == 0 else 0.1):
        pass
    go.clear()
    os.write(1, b"g")
while not stop.is_set():
    go.wait(0)
sys.exit(7 if hurry.is_set() else 5)
"""


def _read_byte(proc, timeout_s: float) -> bytes:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return os.read(proc.stdout.fileno(), 1) if ready else b""


@pytest.mark.parametrize("stop_sig, code", [(signal.SIGTERM, 5), (signal.SIGUSR2, 7)])
def test_go_signals_during_wait_never_deadlock_and_stop_still_works(stop_sig, code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env)
    try:
        assert _read_byte(proc, 60) == b"r", "child did not start"
        for i in range(ROUNDS):
            proc.send_signal(signal.SIGUSR1)
            assert _read_byte(proc, 5) == b"g", f"go signal {i} not handled: the worker deadlocked"
        proc.send_signal(stop_sig)
        assert proc.wait(timeout=5) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_signal_flag_behaves_like_an_event():
    f = SignalFlag()
    assert not f.is_set()
    t0 = time.monotonic()
    assert f.wait(0.05) is False and time.monotonic() - t0 >= 0.045
    assert f.wait(0) is False
    threading.Timer(0.05, f.set).start()
    t0 = time.monotonic()
    assert f.wait(5.0) is True and time.monotonic() - t0 < 2.0     # woken by set(), not by the timeout
    assert f.is_set() and f.wait(0) is True
    f.clear()
    assert not f.is_set() and f.wait(0.01) is False
    for _ in range(100_000):     # far more wakeups than the pipe holds: set() never blocks or fails
        f.set()
    assert f.wait(None) is True
