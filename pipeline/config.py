"""Pipeline config: one YAML per pipeline, a `version:` key, one section per stage named after it.

Every section maps onto a `*Config` dataclass; its fields, types and defaults are the schema.
Unknown keys and bad values are errors that name the file and the key, e.g.

    configs/demo.yaml: fusion.fuserr: unknown key (expected one of: fuser, fallback, device, ...)

Sections: pipeline, capture_vis, capture_ir, registration, fusion, recorder, detector_feed,
image_dump, endpoints. `configs/demo.yaml` is the commented manual of every key.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.transport import Defaults

CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A config file or override is invalid; the one-line message names the file and the key."""


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
class CaptureConfig:
    url: str = ""        # synthetic:// | rtsp://user:pass@host/path | video file | image folder or glob
    options: dict = field(default_factory=dict)  # source-specific keys (see docs/sources_and_recording.md)


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


@dataclass
class EndpointsConfig:
    """Input endpoint of each stage as that stage sees it. Empty = chosen by the runner
    (ipc in a temp dir, or inproc in thread mode). Set them to split a graph over hosts with
    `--only`; `<stage>_peer` is what the upstream side uses when it differs from the mirror
    (e.g. the stage binds tcp://0.0.0.0:5555, upstream connects to tcp://hostB:5555)."""
    registration_vis: str = ""
    registration_vis_peer: str = ""
    registration_ir: str = ""
    registration_ir_peer: str = ""
    fusion: str = ""
    fusion_peer: str = ""
    recorder: str = ""
    recorder_peer: str = ""
    image_dump: str = ""
    image_dump_peer: str = ""


# -- generic dataclass <- dict with named errors --------------------------------------------------
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:      # Literal["auto"] -> 'auto'
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a field annotation; raise ConfigError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise errors[0] if len(errors) == 1 else ConfigError(f"{where}: {value!r} is not a valid value "
                                                             f"(expected {' or '.join(_type_name(a) for a in args)})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected a list of {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    return value


def build(cls: type, data: Any, where: str) -> Any:
    """Make `cls(**data)` with every key and value checked. `where` prefixes errors
    ("configs/demo.yaml: fusion"); a value error raised by the dataclass itself is expected to
    start with the key name ("tolerance_ms: must be > 0")."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = msg.split(":", 1)[0].strip()
        sep = "." if key in names else ": "
        raise ConfigError(f"{where}{sep}{msg}") from None


def dataclass_to_dict(obj: Any) -> dict:
    """Field name -> value; a nested config dataclass (a sub-section) becomes a dict too."""
    return {f.name: dataclass_to_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v
            for f in dataclasses.fields(obj)}


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


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Override `section.key` in a raw config mapping (used by run_stream.py's options)."""
    section, _, key = dotted.partition(".")
    if not isinstance(data.get(section), dict):
        data[section] = {}
    data[section][key] = value


def mask_secrets(obj: Any) -> Any:
    """A copy of a config structure with URL passwords replaced by ***."""
    from stages.capture.source import mask_url
    if isinstance(obj, dict):
        return {k: mask_secrets(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_secrets(v) for v in obj]
    if isinstance(obj, str):
        return mask_url(obj)
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(", ", ": "))
