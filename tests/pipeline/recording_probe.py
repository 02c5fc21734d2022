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
