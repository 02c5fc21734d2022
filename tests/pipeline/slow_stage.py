"""A fusion stage that is deliberately slower than its input, for back-pressure tests.

Imported by the runner as "slow_stage:SlowFusionStage" (this directory is on sys.path in tests).
"""
import os
import time

from stages.fusion import FusionStage

# Per pair: 0.4 s = 2.5 fps against the demo's 10 fps IR. Worker processes read the override
# from the environment they inherit.
DELAY_S = float(os.environ.get("SLOW_FUSION_DELAY_S", "0.4"))


class SlowFusionStage(FusionStage):
    batched = False

    def process(self, packet):
        time.sleep(DELAY_S)
        return super().process(packet)
