"""Online refinement: re-estimate the VIS->IR geometry from live pairs, adopt it only when better.

A caller owns one `OnlineRefiner` and hands it a raw pair now and then (`offer()` counts pairs
and re-estimates every `every_n_pairs`; `update()` re-estimates now). The registration stage
(`registration.online_refine`, stages/registration.py) calls update() every `every_s` seconds
of capture time, on a worker thread. Pure logic: no sockets, no threads; an estimate costs
about 0.1-1 s of CPU on the caller.

A new geometry is adopted only when all of these hold:
- the VIS frame has structure to register on (gate: gradient energy and contrast; smoke washes
  both out, and an estimate on a structureless frame is noise);
- the automatic estimate, started from the current geometry, succeeds;
- its alignment score (gradient correlation of warped VIS vs IR) beats the current geometry's
  score on the same pair by `margin`;
- it moves the VIS corners by no more than `max_shift_px` (a larger jump is not a knock but a
  wrong match).
Every adoption is logged as one line with the old/new score and the corner shift in IR px.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .auto import AutoConfig, estimate_auto
from .geometry import Calibration, CalibrationError, corner_error, today
from .score import alignment_score, structure

log = logging.getLogger("calibration.online")


@dataclass
class OnlineRefinerConfig:
    """Settings of online refinement (section `registration.online` of a pipeline config)."""

    every_n_pairs: int = 200          # pairs between re-estimates in offer() (200 = 20 s at 10 fps)
    margin: float = 0.02              # gradient-correlation gain needed to adopt (score is in [-1, 1])
    # Gate, measured on the synthetic smoky street (bench notes in docs/calibration.md): every
    # frame with VIS gradient energy >= 1.28 registered to < 0.4 px, every failure had <= 1.19.
    min_gradient_energy: float = 1.25  # gray levels per px (mean |grad| after a 1 px blur)
    min_contrast: float = 10.0        # gray levels (std after a 2 px blur); flat frames are ~0-5
    max_shift_px: float = 40.0        # IR px, largest mean corner move accepted as a knock
    auto: AutoConfig = field(default_factory=AutoConfig)  # the estimator's settings

    def __post_init__(self) -> None:
        if self.every_n_pairs < 1:
            raise CalibrationError(f"online: every_n_pairs must be >= 1, got {self.every_n_pairs}")
        if isinstance(self.auto, dict):  # from YAML
            self.auto = AutoConfig(**self.auto)


@dataclass
class RefineResult:
    """What one re-estimate decided. Scores are gradient correlations; shift_px in IR px."""

    adopted: bool
    reason: str                       # "adopted", "structureless", "no-estimate", "not-better", "jump"
    old_score: float = float("nan")
    new_score: float = float("nan")
    shift_px: float = float("nan")
    calibration: Calibration | None = None  # the geometry in force after this decision


class OnlineRefiner:
    """Keeps the current Calibration and replaces it when a live pair proves a better one."""

    def __init__(self, config: OnlineRefinerConfig, calibration: Calibration) -> None:
        self.config = config
        self.calibration = calibration
        self._pairs = 0
        self.adoptions = 0

    def offer(self, vis: np.ndarray, ir: np.ndarray) -> RefineResult | None:
        """Count a live pair; every `every_n_pairs`-th one is re-estimated (see update()).

        Returns None on pairs that are only counted.
        """
        self._pairs += 1
        if self._pairs % self.config.every_n_pairs:
            return None
        return self.update(vis, ir)

    def update(self, vis: np.ndarray, ir: np.ndarray, where: str = "") -> RefineResult:
        """Re-estimate from one raw pair now.

        vis: HxWx3 BGR or HxW uint8 in VIS geometry (the raw frame, not the warped one);
        ir: HxW uint8. Sizes must match the current calibration (CalibrationError otherwise).
        where: appended to the log line of an adoption (e.g. which pair it came from).
        """
        cfg, cur = self.config, self.calibration
        cur.check_sizes((vis.shape[1], vis.shape[0]), (ir.shape[1], ir.shape[0]))
        energy, contrast = structure(vis)
        if energy < cfg.min_gradient_energy or contrast < cfg.min_contrast:
            log.debug("calibration %s kept: VIS structureless (gradient energy %.2f, contrast %.1f)",
                      cur.id, energy, contrast)
            return RefineResult(False, "structureless", calibration=cur)
        old = alignment_score(cur.ir_from_vis, vis, ir)
        try:
            cand = estimate_auto(vis, ir, init=cur.ir_from_vis, config=cfg.auto)
        except CalibrationError as e:
            log.debug("calibration %s kept: no estimate (%s)", cur.id, e)
            return RefineResult(False, "no-estimate", old_score=old, calibration=cur)
        new = alignment_score(cand.ir_from_vis, vis, ir)
        shift = corner_error(cand.ir_from_vis, cur.ir_from_vis, cur.vis_size)
        if shift > cfg.max_shift_px:
            log.debug("calibration %s kept: estimate jumps %.1f px", cur.id, shift)
            return RefineResult(False, "jump", old, new, shift, cur)
        if new < old + cfg.margin:
            return RefineResult(False, "not-better", old, new, shift, cur)
        adopted = Calibration(ir_from_vis=cand.ir_from_vis, vis_size=cur.vis_size, ir_size=cur.ir_size,
                              model=cur.model if cfg.auto.model == cur.model else cfg.auto.model,
                              rms_px=float("nan"), method=f"online from {cur.id}", date=today())
        log.info("calibration %s -> %s: adopted, score %.3f -> %.3f (gain %.3f >= margin %.3f), "
                 "corners moved %.2f px%s", cur.id, adopted.id, old, new, new - old, cfg.margin, shift,
                 f" ({where})" if where else "")
        self.calibration = adopted
        self.adoptions += 1
        return RefineResult(True, "adopted", old, new, shift, adopted)
