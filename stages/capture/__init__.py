"""Capture sources: each turns a camera, file, folder or generator into frame packets.

Every source has the shape of pipeline.stage.Source: `Source(Config)` (no I/O), `start()`,
`read(timeout_s) -> Packet | None` (None = nothing yet; an eos packet once at the end of a finite
source), `stop()` (idempotent), `stats() -> dict`. `open_source()` picks one from a URL, a path or
a *Config.

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

from common.schema import build, to_dict
from pipeline.config import mask_url
from stages.capture.image_folder import ImageFolderConfig, ImageFolderSource
from stages.capture.rtsp import RtspConfig, RtspError, RtspSource
from stages.capture.source import CaptureError
from stages.capture.synthetic import SyntheticConfig, SyntheticSource
from stages.capture.video_file import VideoFileConfig, VideoFileSource
from stages.capture.y16 import Y16Config, Y16Source, is_y16

__all__ = ["open_source", "source_class", "source_config", "CaptureError", "RtspError",
           "SyntheticConfig", "SyntheticSource", "RtspConfig", "RtspSource",
           "VideoFileConfig", "VideoFileSource", "ImageFolderConfig", "ImageFolderSource", "Y16Config", "Y16Source"]

SOURCES = (SyntheticSource, RtspSource, VideoFileSource, ImageFolderSource, Y16Source)


def source_class(url: str) -> type:
    """The source class for a URL or path (no I/O beyond a stat):
    "synthetic[://<vis|ir>?...]", "rtsp[s]://...", "/dev/videoN" or a raw frame file (*.y16, *.raw,
    *.gray16) -> Y16 (16-bit IR counts), a directory or glob (* ? [) -> image folder, any other
    path -> video file."""
    if url.startswith("synthetic"):
        return SyntheticSource
    if url.startswith(("rtsp://", "rtsps://")):
        return RtspSource
    if is_y16(url):
        return Y16Source
    if any(ch in url for ch in "*?[") or Path(url).is_dir():
        return ImageFolderSource
    return VideoFileSource


def _url_fields(url: str, cls: type) -> dict:
    """The config fields a URL itself gives: synthetic://ir?seed=3 -> modality, seed (as text)."""
    if cls is SyntheticSource:
        parts = urlsplit(url)
        return {**dict(parse_qsl(parts.query)), **({"modality": parts.netloc} if parts.netloc else {})}
    return {"url": url} if cls is RtspSource else {"path": url}


def source_config(url: str, modality: str | None = None, *, where: str = "",
                  error: type[Exception] = CaptureError, **options: Any) -> Any:
    """The checked *Config for a URL or path; `options` are further fields of that config (typed
    values, as from YAML). Errors (`error`, one line) name `where` and the key."""
    cls = source_class(url)
    where = where or "open_source"
    named = _url_fields(url, cls)
    try:
        parsed = to_dict(build(cls.Config, {k: v for k, v in named.items() if k != "modality"}, "",
                               error=error, text=True))
    except error as e:     # an option in the URL itself (synthetic://ir?seed=3)
        raise error(f"{where}.url: {mask_url(url)}: {str(e).lstrip('.: ')}") from None
    fields = {**{k: parsed[k] for k in named if k != "modality"}, **options}
    if "modality" in named:
        fields.setdefault("modality", named["modality"])
    if modality is not None:
        fields["modality"] = modality
    if "modality" not in fields:
        raise error(f"{where}: {mask_url(url)!r} needs a modality ('vis' or 'ir')")
    return build(cls.Config, fields, where, error=error)


def open_source(spec: Any, modality: str | None = None, **options: Any):
    """An unstarted source for a *Config instance or a URL/path string (see source_config)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        if modality is not None or options:
            spec = dataclasses.replace(spec, **({"modality": modality} if modality else {}), **options)
        make = next((c for c in SOURCES if c.Config is type(spec)), None)
        if make is None:
            raise CaptureError(f"open_source: no source for {type(spec).__name__} (expected one of "
                               f"{[c.Config.__name__ for c in SOURCES]})")
        return make(spec)
    if isinstance(spec, str):
        return source_class(spec)(source_config(spec, modality, **options))
    raise CaptureError(f"open_source: expected a URL/path string or a source *Config, got {type(spec).__name__}")
