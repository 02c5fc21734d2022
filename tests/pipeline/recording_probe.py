"""Recorder stand-ins for thread-mode tests: they keep what they receive."""
from stages.sinks.recorder import RecorderConfig

SEEN: list = []      # sequence numbers RecordingProbe received
BY_SINK: dict = {}   # recorder out_dir -> [(stream, seq, vis_source)] StreamProbe received


class RecordingProbe:
    Config = RecorderConfig
    inputs = ("fused",)
    outputs: tuple = ()

    def __init__(self, config):
        self.config = config

    def start(self):
        pass

    def process(self, packet):
        SEEN.append(packet.seq)
        return []

    def finish(self):
        return []

    def stop(self):
        pass

    def stats(self):
        return {}


class StreamProbe(RecordingProbe):
    """A recorder stand-in for several camera pairs: which stream's packets reached which sink."""

    def __init__(self, config):
        super().__init__(config)
        self.seen = BY_SINK.setdefault(config.out_dir, [])

    def process(self, packet):
        self.seen.append((packet.stream, packet.seq, packet.meta.get("vis_source", "")))
        return []
