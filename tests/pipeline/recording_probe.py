"""A recorder stand-in for thread-mode tests: keeps the sequence numbers it receives."""
SEEN: list = []


class RecordingProbe:
    def __init__(self, config):
        self.config = config

    def start(self):
        pass

    def process(self, packet):
        if not packet.is_eos:
            SEEN.append(packet.seq)

    def stop(self):
        pass


BY_SINK: dict = {}   # recorder out_dir -> [(stream, seq, vis_source)] it received


class StreamProbe:
    """A recorder stand-in for several camera pairs: which stream's packets reached which sink."""

    def __init__(self, config):
        self.config = config
        self.seen = BY_SINK.setdefault(config.out_dir, [])

    def start(self):
        pass

    def process(self, packet):
        if not packet.is_eos:
            self.seen.append((packet.stream, packet.seq, packet.meta.get("vis_source", "")))

    def stop(self):
        pass
