"""Flat-field correction (FFC) freezes of an LWIR camera.

Every few minutes an uncooled core closes its shutter to recalibrate: for 0.2-1 s it repeats its
last frame, then the picture comes back, often with a small jump of every count (the new
offsets). Raw counts carry sensor noise, so two consecutive frames are never exactly equal
unless the camera froze: exact equality of counts is the freeze signal. (An 8-bit picture of a
still scene after H.264 repeats exactly, which is why registration checks only 16-bit frames by
default.) The first frame after a freeze ends it; the jump of its mean count against the frozen
frame is measured and counted when it exceeds `JUMP_COUNTS`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JUMP_COUNTS = 2.0     # a mean count change at the end of a freeze beyond this is an FFC jump, counts


@dataclass
class FreezeState:
    """What the detector says about one frame."""
    frozen: bool            # the frame repeats the previous one exactly
    age_s: float            # capture time since the last frame that was not frozen, seconds
    jump: float | None      # a frame ending a freeze: its mean count minus the frozen frame's


class FreezeDetector:
    """Feed every IR frame of one camera in capture order; `update()` says whether it is frozen."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._t_good: float | None = None
        self._run = 0                # frozen frames in the current run
        self.freezes = 0             # runs of frozen frames that ended
        self.frozen_frames = 0
        self.jumps = 0               # freezes that ended with a count jump beyond JUMP_COUNTS
        self.longest_s = 0.0         # longest freeze seen, seconds of capture time
        self.last_jump: float | None = None

    def update(self, counts: np.ndarray, t_s: float) -> FreezeState:
        prev, self._prev = self._prev, counts
        if prev is not None and prev.shape == counts.shape and np.array_equal(prev, counts):
            self._run += 1
            self.frozen_frames += 1
            age = t_s - (self._t_good if self._t_good is not None else t_s)
            self.longest_s = max(self.longest_s, age)
            return FreezeState(True, age, None)
        jump = None
        if self._run and prev is not None and prev.shape == counts.shape:
            jump = float(counts.mean(dtype=np.float64) - prev.mean(dtype=np.float64))
            self.freezes += 1
            self.last_jump = round(jump, 2)
            if abs(jump) > JUMP_COUNTS:
                self.jumps += 1
        self._run = 0
        self._t_good = t_s
        return FreezeState(False, 0.0, jump)

    def stats(self) -> dict:
        return {"ffc_freezes": self.freezes, "ffc_frozen_frames": self.frozen_frames, "ffc_jumps": self.jumps,
                "ffc_longest_s": round(self.longest_s, 3), "ffc_last_jump_counts": self.last_jump}
