"""Pipeline config: one YAML per pipeline, a `version:` key, one section per stage named after it.

Every section maps onto a `*Config` dataclass, checked by common.schema.build: unknown keys and
bad values are errors that name the file and the key. This module holds the runtime's own sections
(pipeline, detector_feed, http, security); the stages' sections come from the application's
registry (pipeline/graph.py). `configs/demo.yaml` is the commented manual of every key.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from common.schema import ConfigError
from pipeline.transport import Defaults

CONFIG_VERSION = 1
__all__ = ["ConfigError", "CONFIG_VERSION", "PipelineConfig", "RestartConfig", "DetectorFeedConfig", "HttpConfig",
           "SecurityConfig", "load_yaml", "override", "mask_url", "mask_secrets", "to_json"]


# -- sections owned by the runtime ----------------------------------------------------------------
@dataclass
class RestartConfig:
    """How often a crashed source or sink is restarted before the run gives up (pipeline.restart)."""
    max: int = 3                          # restarts of one stage allowed within window_s; 0 = never restart
    window_s: float = 60.0                # the sliding window the restarts are counted in, seconds
    backoff_s: float = 0.5                # wait before the first restart; doubles per restart in the window, seconds
    backoff_max_s: float = 5.0            # cap on that wait, seconds

    def __post_init__(self) -> None:
        if self.max < 0:
            raise ValueError(f"max: must be >= 0 restarts, got {self.max}")
        for key in ("window_s", "backoff_s", "backoff_max_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0 seconds, got {getattr(self, key)}")


@dataclass
class PipelineConfig:
    stream: str = "site0"                 # logical stream name carried by every packet
    mode: Literal["process", "thread"] = "process"  # one OS process per stage, or threads (tests)
    duration_s: float = 0.0               # stop after this many seconds of streaming; 0 = until the sources end or Ctrl-C
    max_frames: int = 0                   # stop after this many fused frames; 0 = unbounded
    policy: Literal["auto", "live", "lossless"] = "auto"  # auto: live if any source is live
    queue_len: int = 2                    # live edges: frames a slow stage may lag before the oldest is dropped (count)
    status_interval_s: float = 1.0        # how often the status line refreshes, seconds
    startup_timeout_s: float = 60.0       # all stages must be ready within this, seconds
    shutdown_timeout_s: float = 10.0      # end-of-stream must drain within this before stages are stopped, seconds
    ipc_dir: str = ""                     # directory for ipc:// sockets; empty = a fresh temp dir
    allow_public_bind: bool = False       # allow tcp binds on non-loopback hosts (multi-host graphs)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    restart: RestartConfig = field(default_factory=RestartConfig)  # crashed sources/sinks (docs/operations.md)

    def __post_init__(self) -> None:
        if self.duration_s < 0:
            raise ValueError(f"duration_s: must be >= 0 seconds, got {self.duration_s}")
        if self.max_frames < 0:
            raise ValueError(f"max_frames: must be >= 0, got {self.max_frames}")
        if self.queue_len < 1:
            raise ValueError(f"queue_len: must be >= 1, got {self.queue_len}")
        for key in ("status_interval_s", "startup_timeout_s", "shutdown_timeout_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0 seconds, got {getattr(self, key)}")
        if not self.stream:
            raise ValueError("stream: must be a non-empty name")


@dataclass
class DetectorFeedConfig:
    enabled: bool = True
    endpoint: str = Defaults.DETECTOR_FEED   # where detectors subscribe (ZeroMQ PUB)


@dataclass
class HttpConfig:
    """The operations HTTP server (pipeline/ops.py): /metrics, /health and the live view at /."""
    listen: str = ""                      # HOST:PORT, e.g. 127.0.0.1:8080; "" = off
    stale_s: float = 5.0                  # /health is 503 when no fused frame came for this long, seconds
    view_fps: float = 10.0                # the live view's frame cap (the pipeline never waits for it), fps
    jpeg_quality: int = 80                # live view JPEG quality, 1..100

    def __post_init__(self) -> None:
        if not self.stale_s > 0:
            raise ValueError(f"stale_s: must be > 0 seconds, got {self.stale_s}")
        if not 0 < self.view_fps <= 60:
            raise ValueError(f"view_fps: must be in (0, 60] fps, got {self.view_fps}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: must be in 1..100, got {self.jpeg_quality}")
        if self.listen:
            host, colon, port = self.listen.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"listen: expected HOST:PORT with a port in 1..65535, got {self.listen!r}")


@dataclass
class SecurityConfig:
    """CURVE (ZeroMQ's authenticated encryption) on tcp endpoints (pipeline/security.py).
    Key files come from `python -m pipeline keys --out DIR`."""
    curve: Literal["auto", "always"] = "auto"  # auto: on tcp endpoints beyond loopback | always: every tcp endpoint
    insecure: bool = False                # allow tcp beyond loopback without CURVE (anyone on the network can inject frames)
    server_key: str = ""                  # key pair file (DIR/server.key_secret) of this host's binding sockets
    server_public_key: str = ""           # public key file (DIR/server.key) that connecting sockets expect of the server
    client_key: str = ""                  # key pair file (DIR/NAME.key_secret) this host's connecting sockets present
    allowed_clients: str = ""             # directory of client public keys (*.key) binding sockets accept


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at top level")
    return data


def override(data: dict, dotted: str, value: Any) -> None:
    """Set `section.key` in a raw config mapping (--set, the command-line options, tests)."""
    section, _, key = dotted.partition(".")
    if not isinstance(data.get(section), dict):
        data[section] = {}
    else:
        data[section] = dict(data[section])     # never write into a mapping the caller shares
    data[section][key] = value


# user:password@ inside any URL-ish string; the password is the part after the first colon.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")


def mask_url(text: str) -> str:
    """Replace every URL password in `text` with `***`.

    'rtsp://admin:s3cret@10.0.0.5:554/live' -> 'rtsp://admin:***@10.0.0.5:554/live'.
    Works on whole messages too (FFmpeg errors quote the URL), so wrap any text that may contain
    a URL before it is logged, raised or put into packet meta.
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))


def mask_secrets(obj: Any) -> Any:
    """A copy of a config structure with URL passwords replaced by ***."""
    if isinstance(obj, dict):
        return {k: mask_secrets(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_secrets(v) for v in obj]
    if isinstance(obj, str):
        return mask_url(obj)
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(", ", ": "))
