"""Capture sources: each turns a camera, file, folder or generator into frame packets.

Every source has the same shape: `Source(Config)` (no I/O), `start()`, `read(timeout_s) ->
Packet | None` (None = nothing yet; an eos packet once at the end of a finite source), `stop()`
(idempotent), `stats() -> dict`. `open_source()` picks one from a URL, a path or a *Config.

    open_source("synthetic://ir?seed=3&paced=0")              # synthetic IR camera, unpaced
    open_source("rtsp://admin:pw@10.0.0.5/stream1", modality="vis")
    open_source("clips/vis.mp4", modality="vis", realtime=True)
    open_source("tno/seq1/ir/*.png", modality="ir", fps=25)
    open_source("/dev/video2", modality="ir", width=160, height=120, fps=9)    # UVC Y16 (16-bit counts)
    open_source(SyntheticConfig(modality="vis"))
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stages.capture.image_folder import ImageFolderConfig, ImageFolderSource
from stages.capture.rtsp import RtspConfig, RtspError, RtspSource
from stages.capture.source import CaptureError, mask_url
from stages.capture.synthetic import SyntheticConfig, SyntheticSource
from stages.capture.video_file import VideoFileConfig, VideoFileSource
from stages.capture.y16 import Y16Config, Y16Source, is_y16

__all__ = ["open_source", "CaptureError", "RtspError", "mask_url",
           "SyntheticConfig", "SyntheticSource", "RtspConfig", "RtspSource",
           "VideoFileConfig", "VideoFileSource", "ImageFolderConfig", "ImageFolderSource", "Y16Config", "Y16Source"]

SOURCES = {SyntheticConfig: SyntheticSource, RtspConfig: RtspSource,
           VideoFileConfig: VideoFileSource, ImageFolderConfig: ImageFolderSource, Y16Config: Y16Source}


def source_config(spec: str, modality: str | None = None, **options: Any):
    """The *Config for a URL or path string; `options` are further fields of that config.

    - "synthetic" or "synthetic://<vis|ir>?seed=..&paced=0&scene=target&smoke=0.5&fps=.."
    - "rtsp://..." / "rtsps://..."
    - "/dev/videoN" or a raw frame file (*.y16, *.raw, *.gray16) -> Y16 (16-bit IR counts)
    - a directory or a glob pattern (* ? [) -> image folder
    - any other path -> video file
    Raises CaptureError on unknown option names or a missing modality.
    """
    if spec.startswith("synthetic"):
        parts = urlsplit(spec)
        fields = dict(parse_qsl(parts.query))
        if parts.netloc:
            fields["modality"] = parts.netloc
        cls, fields = SyntheticConfig, {**fields, **options}
    elif spec.startswith(("rtsp://", "rtsps://")):
        cls, fields = RtspConfig, {"url": spec, **options}
    elif is_y16(spec):
        cls, fields = Y16Config, {"path": spec, **options}
    elif any(ch in spec for ch in "*?[") or Path(spec).is_dir():
        cls, fields = ImageFolderConfig, {"path": spec, **options}
    else:
        cls, fields = VideoFileConfig, {"path": spec, **options}
    if modality is not None:
        fields["modality"] = modality
    if "modality" not in fields:
        raise CaptureError(f"open_source: {mask_url(spec)!r} needs a modality ('vis' or 'ir')")
    return _build(cls, fields, mask_url(spec))


def _build(cls, fields: dict, where: str):
    """cls(**fields), naming unknown keys; strings from a URL query become the field's type."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise CaptureError(f"open_source: {where}: unknown option(s) {unknown} for {cls.__name__} "
                           f"(expected some of {sorted(known)})")
    typed = {k: _parse_scalar(v, str(known[k].type), k, where) if isinstance(v, str) else v
             for k, v in fields.items()}
    return cls(**typed)


def _parse_scalar(text: str, annotation: str, key: str, where: str) -> Any:
    """'3' -> 3 for an int field, '0' -> False for a bool field...; str fields stay as they are."""
    try:
        if annotation.startswith("str"):
            return text
        if annotation.startswith("bool"):
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if annotation.startswith("int"):
            return int(text)
        if annotation.startswith("float"):
            return float(text)
    except ValueError:
        raise CaptureError(f"open_source: {where}: option {key}={text!r} is not a valid {annotation}") from None
    return text


def open_source(spec: Any, modality: str | None = None, **options: Any):
    """An unstarted source for a *Config instance or a URL/path string (see source_config)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        if modality is not None or options:
            spec = dataclasses.replace(spec, **({"modality": modality} if modality else {}), **options)
        make = SOURCES.get(type(spec))
        if make is None:
            raise CaptureError(f"open_source: no source for {type(spec).__name__} (expected one of "
                               f"{[c.__name__ for c in SOURCES]})")
        return make(spec)
    if isinstance(spec, str):
        config = source_config(spec, modality, **options)
        return SOURCES[type(config)](config)
    raise CaptureError(f"open_source: expected a URL/path string or a source *Config, got {type(spec).__name__}")
