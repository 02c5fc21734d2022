"""A fake host clock for timing tests: time moves only when the code under test sleeps (or the
test says so), so a busy machine cannot change what a test sees."""
from stages.capture.source import HostClock


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        self.slept += max(0.0, seconds)

    def host(self) -> HostClock:
        return HostClock(mono=lambda: self.now, wall=lambda: self.now + 1.7e9, sleep=self.sleep)
