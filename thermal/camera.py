"""The IR camera's own settings (`capture_ir.agc`, `capture_ir.radiometric`) and what registration
does with a 16-bit frame.

The two keys sit in the camera's config section, beside the source's own options, because they
describe that camera. `split_camera_options()` takes them out before the source is built (a
source knows nothing of them); the runtime puts them into every IR frame packet's meta
(`meta.ir_camera`, the capture node's NodeSpec.meta, app/registry.py), so the registration stage
downstream, possibly on another host, sees them with the counts.

`IrFrames` is registration's side: for each 16-bit IR frame it detects FFC freezes (thermal.ffc),
holds a frozen frame for at most `hold_ms` (then drops it, counted), runs the AGC, and returns
the packet with buffers {"ir": the 8-bit picture, "ir_counts": the counts}; for each pair it adds
`meta.ir_temperature_c` and the map itself (`meta.ir_radiometric`) when the camera is radiometric.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from pipeline.packet import Packet
from thermal.agc import AgcConfig, make_agc
from thermal.ffc import FreezeDetector
from thermal.radiometry import RadiometricConfig, celsius_lut, frame_temperatures

log = logging.getLogger(__name__)
CAMERA_KEYS = ("agc", "radiometric")


class IrCameraError(ValueError):
    """16-bit IR settings or frames that do not fit together. One line."""


@dataclass
class IrCamera:
    """What capture_ir says about the camera's counts."""
    agc: AgcConfig
    radiometric: RadiometricConfig | None = None

    def to_meta(self) -> dict:
        return {"agc": dataclasses.asdict(self.agc),
                "radiometric": None if self.radiometric is None else dataclasses.asdict(self.radiometric)}

    @classmethod
    def from_meta(cls, meta: dict | None) -> "IrCamera":
        meta = meta or {}
        rc = meta.get("radiometric")
        return cls(AgcConfig(**(meta.get("agc") or {})), RadiometricConfig(**rc) if rc else None)


def split_camera_options(options: dict, modality: str, where: str) -> tuple[dict, IrCamera | None]:
    """(the source's own options, the IrCamera or None if neither key is set).

    `where` names the section in errors ("configs/x.yaml: capture_ir"). Raises
    common.schema.ConfigError for a bad key or value, or either key on a VIS camera."""
    from common.schema import ConfigError, build
    rest = {k: v for k, v in options.items() if k not in CAMERA_KEYS}
    given = [k for k in CAMERA_KEYS if k in options]
    if not given:
        return rest, None
    if modality != "ir":
        raise ConfigError(f"{where}.{given[0]}: only an IR camera has counts to map (set it in capture_ir)")
    agc = build(AgcConfig, options.get("agc"), f"{where}.agc")
    rc = build(RadiometricConfig, options["radiometric"], f"{where}.radiometric") \
        if options.get("radiometric") is not None else None
    if agc.mode == "window" and rc is None:
        raise ConfigError(f"{where}.agc.mode: window needs {where.split(': ')[-1]}.radiometric "
                          f"(the counts -> temperature map)")
    return rest, IrCamera(agc, rc)


class IrFrames:
    """Registration's handling of 16-bit IR frames: FFC freezes, AGC, temperatures.

    detect_ffc: check frames for freezes: "auto" 16-bit frames only, True every frame (an 8-bit
    stream too), False never. hold_ms: a frozen frame older than this (capture time since the last
    fresh one) is dropped instead of paired."""

    def __init__(self, detect_ffc: bool | str, hold_ms: float):
        self.detect_ffc, self.hold_s = detect_ffc, hold_ms / 1000.0
        self.ffc = FreezeDetector()
        self.camera: IrCamera | None = None
        self._camera_meta: dict | None = None
        self._agc = None
        self._lut: np.ndarray | None = None
        self.counts = {"ir_frozen_held": 0, "ir_frozen_dropped": 0}

    def _configure(self, meta: dict | None) -> None:
        if self._agc is not None and meta == self._camera_meta:
            return
        self.camera = IrCamera.from_meta(meta)
        self._camera_meta = meta
        self._agc = make_agc(self.camera.agc, self.camera.radiometric)
        self._lut = celsius_lut(self.camera.radiometric) if self.camera.radiometric else None
        log.info("IR counts: agc %s%s", self.camera.agc.mode,
                 f", radiometric ({self.camera.radiometric.kind})" if self.camera.radiometric else "")

    def frame(self, pkt: Packet) -> Packet | None:
        """An IR frame packet in; the packet with the 8-bit picture and the counts, or None when it
        is a frozen frame held longer than hold_ms (dropped, counted)."""
        counts = pkt.buffers["ir"]
        sixteen = counts.dtype == np.uint16
        if not sixteen and (pkt.meta.get("ir_camera") or {}).get("radiometric"):
            raise IrCameraError(f"capture_ir.radiometric: the IR camera delivers {counts.dtype} frames "
                                f"(a picture after the camera's own AGC); radiometry needs its 16-bit counts")
        detect = self.detect_ffc is True or (self.detect_ffc == "auto" and sixteen)
        if not sixteen and not detect:
            return pkt
        meta = dict(pkt.meta)
        if detect:
            state = self.ffc.update(counts, pkt.t_mono)
            if state.frozen and state.age_s > self.hold_s:
                self.counts["ir_frozen_dropped"] += 1
                return None
            meta["ir_frozen"] = state.frozen
            if state.frozen:
                self.counts["ir_frozen_held"] += 1
                meta["ir_age_ms"] = round(state.age_s * 1000.0, 1)
            if state.jump is not None:
                meta["ir_ffc_jump_counts"] = round(state.jump, 2)
        if not sixteen:
            return dataclasses.replace(pkt, meta=meta)
        self._configure(pkt.meta.get("ir_camera"))
        picture = self._agc(counts, pkt.t_mono)
        return dataclasses.replace(pkt, buffers={**pkt.buffers, "ir": picture, "ir_counts": counts}, meta=meta)

    def pair_meta(self, counts: np.ndarray) -> dict:
        """meta of a pair whose (cropped, resized) counts are `counts`: ir_temperature_c if radiometric."""
        if self.camera is None or self.camera.radiometric is None:
            return {}
        return {"ir_temperature_c": frame_temperatures(counts, self.camera.radiometric, self._lut),
                "ir_radiometric": dataclasses.asdict(self.camera.radiometric)}

    def stats(self) -> dict:
        out = dict(self.counts)
        if self.detect_ffc is not False:
            out.update(self.ffc.stats())
        return out
