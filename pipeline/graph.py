"""The pipeline graph: the validated config of a whole pipeline, and the node specs built from it.

    capture_vis --\\
                   >-- registration --> fusion --+--> recorder
    capture_ir  --/                              +--> detector feed (ZeroMQ PUB, not a node)
                                                 +--> image_dump (optional)

Several camera pairs can share one fusion stage (`pairs:` in the config): each pair gets its own
capture_vis@NAME, capture_ir@NAME, registration@NAME and recorder@NAME (image_dump@NAME) nodes;
every packet of a pair carries stream NAME, the fusion stage batches pairs of all cameras, and
its outputs route each fused packet to its own pair's sinks (the detector feed gets them all).

Each node becomes a JSON-able spec (`NodeSpec.to_dict()`) that `pipeline.worker` runs in a
thread or a process. Every non-source node binds its own input (a PULL socket); upstream nodes
connect to it. The queue policy of every edge is decided here and printed at startup:
live sources -> "drop_oldest" on every edge; file sources -> "block" (lossless).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import (CONFIG_VERSION, ConfigError, DetectorFeedConfig, EndpointsConfig, HttpConfig,
                             PipelineConfig, SecurityConfig, build, dataclass_to_dict, load_yaml)
from pipeline.security import SecurityError, check_endpoint
from pipeline.transport import EndpointError, parse_endpoint
from stages.fusion import FusionConfig
from stages.registration import RegistrationConfig

NODES = ("capture_vis", "capture_ir", "registration", "fusion", "recorder", "image_dump")
SECTIONS = ("version", "pipeline", *NODES, "detector_feed", "endpoints", "pairs", "http", "security")
LATENCY_NODE = "fusion"   # latency "capture -> fused" is measured at fusion's output
PAIR_KEYS = ("name", "capture_vis", "capture_ir", "registration", "recorder", "image_dump")
PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")   # a stream name, a node suffix, a folder name
PAIR_SEP = "@"            # node names of a pair: capture_vis@cam1, registration@cam1, recorder@cam1
# With pairs:, only the shared fusion input may be set in `endpoints:`; per-pair edges use the
# runner's defaults (splitting a multi-pair graph over hosts is not supported yet).
PAIR_ENDPOINTS = ("fusion", "fusion_peer")


# -- capture sections ------------------------------------------------------------------------------
def source_kind(url: str) -> str:
    """'synthetic' | 'rtsp' | 'y16' | 'file' | 'folder' from a capture URL (no I/O beyond a stat)."""
    from stages.capture.y16 import is_y16
    if url.startswith("synthetic:"):
        return "synthetic"
    if url.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if is_y16(url):
        return "y16"
    if any(ch in url for ch in "*?[") or Path(url).is_dir():
        return "folder"
    return "file"


def source_is_live(url: str, options: dict) -> bool:
    """Live sources (cameras, paced synthetic) drop the oldest frame when late; files never do."""
    kind = source_kind(url)
    if kind == "rtsp" or (kind == "y16" and url.startswith("/dev/")):
        return True
    if kind == "synthetic":
        return bool(options.get("paced", True))
    return bool(options.get("realtime", False) or options.get("paced", False))


@dataclass
class CaptureSection:
    url: str                 # synthetic:// | rtsp://... | video file | image folder/glob
    options: dict            # the other keys of the section, for the source's own *Config


@dataclass
class SinkSection:
    enabled: bool
    options: dict            # the other keys, for the sink's own *Config


@dataclass
class PairSection:
    """One camera pair: its cameras, registration and sinks. `name` is the stream of its packets
    ("" for the single pair of a config without `pairs:`, whose stream is pipeline.stream)."""
    name: str
    capture_vis: CaptureSection
    capture_ir: CaptureSection
    registration: RegistrationConfig
    recorder: SinkSection
    image_dump: SinkSection


@dataclass
class GraphConfig:
    """A whole pipeline, validated. `raw` keeps the YAML mapping for logging (masked).

    Without `pairs:` the capture/registration/sink sections describe the one camera pair and
    `pairs` is empty. With `pairs:` every pair is in `pairs` (its sections merged over the
    top-level registration/recorder/image_dump defaults) and capture_vis/capture_ir are None."""
    path: str
    pipeline: PipelineConfig
    capture_vis: CaptureSection | None
    capture_ir: CaptureSection | None
    registration: RegistrationConfig
    fusion: FusionConfig
    recorder: SinkSection
    detector_feed: DetectorFeedConfig
    image_dump: SinkSection
    endpoints: EndpointsConfig
    pairs: list[PairSection] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    http: HttpConfig = field(default_factory=HttpConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def units(self) -> list[PairSection]:
        """The camera pairs this graph runs: `pairs`, or the single pair as one unnamed unit."""
        if self.pairs:
            return self.pairs
        return [PairSection("", self.capture_vis, self.capture_ir, self.registration, self.recorder,
                            self.image_dump)]


def _section(data: dict, name: str) -> dict:
    value = data.get(name) or {}
    return value


# Where each source kind keeps its *Config (stages/capture/, engineer B's modules).
SOURCE_CONFIGS = {
    "synthetic": ("stages.capture.synthetic", "SyntheticConfig"),
    "rtsp": ("stages.capture.rtsp", "RtspConfig"),
    "y16": ("stages.capture.y16", "Y16Config"),
    "file": ("stages.capture.video_file", "VideoFileConfig"),
    "folder": ("stages.capture.image_folder", "ImageFolderConfig"),
}


def _source_config(url: str, modality: str, stream: str, options: dict, where: str) -> Any:
    """The capture source's own *Config object for `url`, every key checked."""
    kind = source_kind(url)
    module, name = SOURCE_CONFIGS[kind]
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{where}.url: {kind} sources are not available ({e})") from None
    # capture_ir.agc / .radiometric describe the camera's counts, not the source (thermal/camera.py)
    from thermal.camera import split_camera_options
    opts, _ = split_camera_options(dict(options), modality, where)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in ("url", "path", "modality", "stream"):
        if key in opts and key in names:
            raise ConfigError(f"{where}.{key}: set by the runner (from url:, the section name and "
                              f"pipeline.stream); remove it")
    if "stream" in names:
        opts["stream"] = stream
    checked = build(cls, {**opts, "modality": modality} if "modality" in names else opts, where)
    # Let stages.capture merge what the URL itself says (synthetic://ir?seed=3), then build it.
    from stages.capture import CaptureError, source_config
    given = {k: getattr(checked, k) for k in opts}
    try:
        return source_config(url, modality, **given)
    except CaptureError as e:
        raise ConfigError(f"{where}.url: {e}") from None


def _sink_config(kind: str, options: dict, where: str) -> Any:
    if kind == "recorder":
        from stages.sinks.recorder import RecorderConfig as cls
    else:
        from stages.sinks.image_dump import ImageDumpConfig as cls
    return build(cls, options, where)


def load_graph_config(path: str | Path, overrides: dict[str, Any] | None = None) -> GraphConfig:
    """Read, override (`{"fusion.fuser": "average"}`) and validate a pipeline YAML."""
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][key] = value
    return validate(data, str(path))


def _capture_section(sec: Any, node: str, modality: str, stream: str, where: str) -> CaptureSection:
    if not isinstance(sec, dict):
        raise ConfigError(f"{where}: {node}: expected a mapping of keys")
    sec = dict(sec)
    url = sec.pop("url", None)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: {node}.url: required (synthetic://, rtsp://..., a video file or an image folder)")
    _source_config(url, modality, stream, sec, f"{where}: {node}")   # validates only
    return CaptureSection(url=url, options=sec)


def _sink_section(sec: Any, node: str, where: str) -> SinkSection:
    if not isinstance(sec, dict):
        raise ConfigError(f"{where}: {node}: expected a mapping of keys")
    sec = dict(sec)
    enabled = sec.pop("enabled", node.split(".")[-1] == "recorder")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: {node}.enabled: expected true or false, got {enabled!r}")
    _sink_config(node.split(".")[-1], sec, f"{where}: {node}")
    return SinkSection(enabled=enabled, options=sec)


def _pairs(data: dict, where: str) -> list[PairSection]:
    """The `pairs:` list, each pair's registration/recorder/image_dump merged over the top-level
    sections (which become the defaults of every pair). Errors name pairs[i].key."""
    pairs = data["pairs"]
    if not isinstance(pairs, list) or not pairs:
        raise ConfigError(f"{where}: pairs: expected a non-empty list of camera pairs "
                          f"(each a mapping with keys {', '.join(PAIR_KEYS)})")
    for node in ("capture_vis", "capture_ir"):
        if data.get(node) is not None:
            raise ConfigError(f"{where}: {node}: not used when pairs: is set (give each pair its own {node})")
    for key, value in (data.get("endpoints") or {}).items():
        if value and key not in PAIR_ENDPOINTS:
            raise ConfigError(f"{where}: endpoints.{key}: per-pair endpoints are not supported with pairs: "
                              f"(only {', '.join(PAIR_ENDPOINTS)} may be set)")
    if (data.get("registration") or {}).get("stream"):
        raise ConfigError(f"{where}: registration.stream: not used when pairs: is set (each pair's name is its stream)")
    out, seen = [], set()
    for i, pair in enumerate(pairs):
        at = f"pairs[{i}]"
        if not isinstance(pair, dict):
            raise ConfigError(f"{where}: {at}: expected a mapping with keys {', '.join(PAIR_KEYS)}, got {pair!r}")
        for key in pair:
            if key not in PAIR_KEYS:
                raise ConfigError(f"{where}: {at}.{key}: unknown key (expected one of: {', '.join(PAIR_KEYS)})")
        name = pair.get("name")
        if not isinstance(name, str) or not PAIR_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {at}.name: required, 1-32 letters, digits, '_' or '-' "
                              f"(the pair's stream name), got {name!r}")
        if name in seen:
            raise ConfigError(f"{where}: {at}.name: {name!r} is used by another pair (names must be unique)")
        seen.add(name)
        captures = {}
        for node, modality in (("capture_vis", "vis"), ("capture_ir", "ir")):
            if node not in pair:
                raise ConfigError(f"{where}: {at}.{node}: required (each pair has its own cameras)")
            captures[node] = _capture_section(pair[node], f"{at}.{node}", modality, name, where)
        merged = {}
        for node in ("registration", "recorder", "image_dump"):
            own = pair.get(node) or {}
            if not isinstance(own, dict):
                raise ConfigError(f"{where}: {at}.{node}: expected a mapping of keys, got {own!r}")
            if node == "registration" and "stream" in own:
                raise ConfigError(f"{where}: {at}.registration.stream: set by the runner from {at}.name; remove it")
            merged[node] = {**(data.get(node) or {}), **own}
            if node != "registration" and "out_dir" not in own:
                # Each pair records into its own folder under the shared out_dir.
                base = merged[node].get("out_dir")
                if base is None:
                    base = _sink_config(node, {}, node).out_dir
                merged[node]["out_dir"] = str(Path(str(base)) / name)
        registration = build(RegistrationConfig, merged["registration"], f"{where}: {at}.registration")
        out.append(PairSection(name=name, capture_vis=captures["capture_vis"], capture_ir=captures["capture_ir"],
                               registration=dataclasses.replace(registration, stream=name),
                               recorder=_sink_section(merged["recorder"], f"{at}.recorder", where),
                               image_dump=_sink_section(merged["image_dump"], f"{at}.image_dump", where)))
    return out


def _calibration_for(reg: RegistrationConfig, vis: CaptureSection, ir: CaptureSection,
                     recorder: SinkSection) -> RegistrationConfig:
    """registration.calibration "" decided: the demo calibration for the synthetic source, else an
    estimate at start written beside the recording (stages.registration.resolve_calibration)."""
    from stages.registration import resolve_calibration
    out_dir = recorder.options.get("out_dir") or _sink_config("recorder", {}, "recorder").out_dir
    return resolve_calibration(reg, (source_kind(vis.url), source_kind(ir.url)), str(out_dir))


def validate(data: dict, where: str) -> GraphConfig:
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{where}: {key}: unknown section (expected one of: {', '.join(SECTIONS)})")
    if data.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{where}: version: expected {CONFIG_VERSION}, got {data.get('version')!r}")
    pipeline = build(PipelineConfig, _section(data, "pipeline"), f"{where}: pipeline")
    pairs = _pairs(data, where) if "pairs" in data else []
    captures: dict[str, CaptureSection | None] = {"capture_vis": None, "capture_ir": None}
    if not pairs:
        for node, modality in (("capture_vis", "vis"), ("capture_ir", "ir")):
            captures[node] = _capture_section(_section(data, node), node, modality, pipeline.stream, where)
    registration = build(RegistrationConfig, _section(data, "registration"), f"{where}: registration")
    fusion = build(FusionConfig, _section(data, "fusion"), f"{where}: fusion")
    sinks = {node: _sink_section(_section(data, node), node, where) for node in ("recorder", "image_dump")}
    feed = build(DetectorFeedConfig, _section(data, "detector_feed"), f"{where}: detector_feed")
    endpoints = build(EndpointsConfig, _section(data, "endpoints"), f"{where}: endpoints")
    http = build(HttpConfig, _section(data, "http"), f"{where}: http")
    security = build(SecurityConfig, _section(data, "security"), f"{where}: security")
    if http.listen:
        try:
            parse_endpoint(f"pull+bind:tcp://{http.listen}", pipeline.allow_public_bind)
        except EndpointError:
            raise ConfigError(f"{where}: http.listen: {http.listen!r} is not a loopback address; the metrics and "
                              f"live view would be open to the network: use 127.0.0.1:PORT or set "
                              f"pipeline.allow_public_bind: true") from None
    try:
        if feed.enabled:
            ep = parse_endpoint(feed.endpoint, pipeline.allow_public_bind)
            if ep.socket != "pub":
                raise EndpointError(f"endpoint {feed.endpoint!r}: the detector feed must be a pub socket")
        for f in dataclasses.fields(endpoints):
            value = getattr(endpoints, f.name)
            if value:
                parse_endpoint(value, pipeline.allow_public_bind)
    except EndpointError as e:
        raise ConfigError(f"{where}: {e}") from None
    if pairs:
        pairs = [dataclasses.replace(u, registration=_calibration_for(u.registration, u.capture_vis, u.capture_ir,
                                                                      u.recorder)) for u in pairs]
    else:
        registration = _calibration_for(registration, captures["capture_vis"], captures["capture_ir"], sinks["recorder"])
    return GraphConfig(path=where, pipeline=pipeline, capture_vis=captures["capture_vis"],
                       capture_ir=captures["capture_ir"], registration=registration, fusion=fusion,
                       recorder=sinks["recorder"], detector_feed=feed, image_dump=sinks["image_dump"],
                       endpoints=endpoints, pairs=pairs, raw=data, http=http, security=security)


def effective_config(gc: GraphConfig) -> dict:
    """Every key of every section with its value in force (defaults filled in), for the log.

    Mask it (pipeline.config.mask_secrets) before printing: capture URLs may hold passwords."""
    out: dict[str, Any] = {"version": CONFIG_VERSION, "pipeline": dataclass_to_dict(gc.pipeline)}

    def unit_sections(u: PairSection, stream: str) -> dict:
        d: dict[str, Any] = {}
        for node, modality in (("capture_vis", "vis"), ("capture_ir", "ir")):
            sec = getattr(u, node)
            cfg = _source_config(sec.url, modality, stream, sec.options, node)
            d[node] = {"url": sec.url, **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("url", "path")}}
            from thermal.camera import split_camera_options
            _, camera = split_camera_options(sec.options, modality, node)
            if camera is not None:
                d[node].update(camera.to_meta())
        d["registration"] = dataclass_to_dict(u.registration)
        for node in ("recorder", "image_dump"):
            sec = getattr(u, node)
            d[node] = {"enabled": sec.enabled, **dataclasses.asdict(_sink_config(node, sec.options, node))}
        return d

    if gc.pairs:
        out["pairs"] = [{"name": u.name, **unit_sections(u, u.name)} for u in gc.pairs]
        out["fusion"] = dataclass_to_dict(gc.fusion)
    else:
        single = unit_sections(gc.units()[0], gc.pipeline.stream)
        out.update({k: single[k] for k in ("capture_vis", "capture_ir", "registration")})
        out["fusion"] = dataclass_to_dict(gc.fusion)
        out.update({k: single[k] for k in ("recorder", "image_dump")})
    out["detector_feed"] = dataclass_to_dict(gc.detector_feed)
    out["endpoints"] = {k: v for k, v in dataclass_to_dict(gc.endpoints).items() if v}
    out["http"] = dataclass_to_dict(gc.http)
    out["security"] = dataclass_to_dict(gc.security)     # key file paths only, never key material
    return out


# -- node specs ------------------------------------------------------------------------------------
@dataclass
class NodeSpec:
    name: str
    role: str                      # "source" | "stage" | "sink"
    config: dict                   # the node's section (validated), rebuilt in the worker
    inputs: list[dict]             # [{"endpoint", "policy", "queue_len", "name"}]
    outputs: list[dict]            # [{"endpoint", "block", "name"}]
    expected_eos: int = 1
    max_outputs: int = 0
    batch: int = 1                 # most packets per process_batch call
    max_wait_ms: float = 0.0       # longest the oldest packet waits for a batch to fill, ms
    factory: str = ""              # "module:callable" taking the node's *Config (tests, plugins)
    extra: dict = field(default_factory=dict)
    security: dict = field(default_factory=dict)   # the security section: CURVE keys for tcp endpoints

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _ipc_dir(cfg: PipelineConfig) -> str:
    if cfg.ipc_dir:
        Path(cfg.ipc_dir).mkdir(parents=True, exist_ok=True)
        return cfg.ipc_dir
    return tempfile.mkdtemp(prefix="smokefusion-")


def build_specs(gc: GraphConfig, mode: str, factories: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes of the graph with their endpoints and edge policies.

    `factories` maps a node name, or for the nodes of camera pairs their base name
    ("recorder" for recorder@cam1), to a "module:callable" that builds its object (tests)."""
    pc = gc.pipeline
    units = gc.units()
    live = [source_is_live(sec.url, sec.options) for u in units for sec in (u.capture_vis, u.capture_ir)]
    if pc.policy == "auto":
        lossy = any(live)
    else:
        lossy = pc.policy == "live"
    policy = "drop_oldest" if lossy else "block"
    base = _ipc_dir(pc) if mode == "process" else ""
    run_id = f"{os.getpid()}-{id(gc):x}"

    def default_input(key: str) -> str:
        if mode == "thread":
            return f"pull+bind:inproc://{run_id}-{key}"
        return f"pull+bind:ipc://{base}/{key}.sock"

    def input_of(key: str, suffix: str = "") -> tuple[str, str]:
        """(the consuming node's input endpoint, what upstream uses) for endpoints.<key>; edges of
        camera pairs (suffix "@NAME") always use the runner's defaults."""
        own = "" if suffix else getattr(gc.endpoints, key)
        own = own or default_input(key + suffix)
        peer = "" if suffix else getattr(gc.endpoints, f"{key}_peer")
        if not peer:
            ep = parse_endpoint(own, True)
            peer = str(ep.peer("push"))
        return own, peer

    fus_in, fus_peer = input_of("fusion")
    inp = lambda ep, name, n=pc.queue_len: {"endpoint": ep, "policy": policy, "queue_len": n, "name": name}
    out = lambda ep, name: {"endpoint": ep, "block": not lossy, "name": name}

    specs, sinks = [], []
    fusion_outputs = []
    for u in units:
        sfx = f"{PAIR_SEP}{u.name}" if u.name else ""
        extra = {"stream": u.name} if u.name else {}
        reg_inputs = []
        for node, sec, modality in (("capture_vis", u.capture_vis, "vis"), ("capture_ir", u.capture_ir, "ir")):
            # One registration input per camera, so lossless runs can merge the two in time order.
            r_in, r_peer = input_of(f"registration_{modality}", sfx)
            reg_inputs.append(inp(r_in, node + sfx))
            specs.append(NodeSpec(name=node + sfx, role="source", config={"url": sec.url, **sec.options},
                                  inputs=[], outputs=[out(r_peer, "registration" + sfx)],
                                  extra={"modality": modality, **extra}))
        reg_cfg = dataclass_to_dict(u.registration)
        reg_cfg["stream"] = reg_cfg["stream"] or pc.stream
        specs.append(NodeSpec(name="registration" + sfx, role="stage", config=reg_cfg,
                              inputs=reg_inputs, outputs=[out(fus_peer, "fusion")], expected_eos=2,
                              extra=dict(extra)))
        for sink in ("recorder", "image_dump"):
            section = getattr(u, sink)
            if not section.enabled:
                continue
            s_in, s_peer = input_of(sink, sfx)
            # A pair's sinks take only that pair's fused packets (routed by stream in the worker).
            fusion_outputs.append({**out(s_peer, sink + sfx), **({"streams": [u.name]} if u.name else {})})
            sinks.append(NodeSpec(name=sink + sfx, role="sink", config=dict(section.options),
                                  inputs=[inp(s_in, "fusion")], outputs=[], extra=dict(extra)))
    if gc.detector_feed.enabled:
        # PUB never blocks: a slow detector loses frames, the recording never does.
        fusion_outputs.append({"endpoint": gc.detector_feed.endpoint, "block": False, "name": "detector_feed"})
    preview_dir = ""
    if gc.http.listen:
        # The live view's feed (pipeline/ops.py): PUB never blocks, and the sender skips packets
        # beyond view_fps before encoding them, so the view cannot slow fusion down.
        preview_dir = base or tempfile.mkdtemp(prefix="smokefusion-view-")
        fusion_outputs.append({"endpoint": f"pub+bind:ipc://{preview_dir}/preview.sock", "block": False,
                               "name": "preview", "max_fps": gc.http.view_fps})
    # Live: fusion may lag queue_len pairs per camera pair, and at least a full batch, before the
    # oldest is dropped (a shorter queue would drop pairs a batch was about to take).
    fus_queue = max(pc.queue_len * len(units), gc.fusion.max_batch)
    specs.append(NodeSpec(name="fusion", role="stage", config=dataclass_to_dict(gc.fusion),
                          inputs=[inp(fus_in, "registration", fus_queue)], outputs=fusion_outputs,
                          expected_eos=len(units), max_outputs=pc.max_frames, batch=gc.fusion.max_batch,
                          max_wait_ms=gc.fusion.max_wait_ms))
    if preview_dir and not base:
        specs[-1].extra["ipc_dir_auto"] = preview_dir     # the runner removes it at exit
    specs += sinks
    for s in specs:
        s.security = dataclass_to_dict(gc.security)
        if factories:
            s.factory = factories.get(s.name) or factories.get(s.name.split(PAIR_SEP)[0], "")
        if base and not pc.ipc_dir:
            s.extra["ipc_dir_auto"] = base     # the runner removes it at exit
    return specs


def _edges(specs: list[NodeSpec]) -> list[tuple[str, str, str]]:
    """(endpoints key, upstream node, downstream node) of every socket edge of the graph."""
    out = []
    for s in specs:
        base, sep, pair = s.name.partition(PAIR_SEP)
        sfx = sep + pair
        if base == "registration":
            out += [("registration_vis", "capture_vis" + sfx, s.name), ("registration_ir", "capture_ir" + sfx, s.name),
                    ("fusion", s.name, "fusion")]
        elif s.role == "sink":
            out.append((base, "fusion", s.name))
    return out


def select_nodes(specs: list[NodeSpec], only: str, gc: GraphConfig) -> list[NodeSpec]:
    """The nodes named in `only` ("registration,fusion"), for running part of a graph on one host.
    With `pairs:` a base name (registration) means that node of every pair (registration@cam1, ...).

    Raises ConfigError if a name is unknown or an edge leaving the subset has no configured
    endpoint (the default ipc paths are private to one run, so the other host could not reach them).
    With pairs: only the fusion input (endpoints.fusion) may cross hosts."""
    names = [s.strip() for s in only.split(",") if s.strip()]
    present = [s.name for s in specs]
    chosen_names: set[str] = set()
    for n in names:
        if n in present:
            chosen_names.add(n)
        elif gc.pairs and any(p.split(PAIR_SEP)[0] == n for p in present):
            chosen_names |= {p for p in present if p.split(PAIR_SEP)[0] == n}
        else:
            raise ConfigError(f"--only {n}: not a stage of this pipeline (expected one of: {', '.join(sorted(present))})")
    chosen = [s for s in specs if s.name in chosen_names]
    # Every edge that crosses the boundary of this host must have a configured endpoint.
    for key, up, down in _edges(specs):
        if (up in chosen_names) == (down in chosen_names) or up not in present:
            continue
        if gc.pairs and key != "fusion":
            raise ConfigError(f"{gc.path}: pairs: --only {only}: {up} -> {down} would cross hosts; with pairs: only "
                              f"the fusion input (endpoints.fusion) can, so run a pair's cameras and registration "
                              f"together, and fusion with the recorders")
        if not getattr(gc.endpoints, key):
            raise ConfigError(f"{gc.path}: endpoints.{key}: must be set when running --only {only} "
                              f"(the stages on the other side of this edge run elsewhere)")
    return chosen


def check_security(specs: list[NodeSpec], gc: GraphConfig) -> None:
    """Refuse (ConfigError, one line) any tcp endpoint these nodes open that needs CURVE
    (security.curve) but has no usable keys, unless security.insecure. Run on the nodes this
    host runs: a split graph's hosts each hold only their own keys."""
    sec = dataclass_to_dict(gc.security)
    try:
        for s in specs:
            for i in s.inputs:
                ep = parse_endpoint(i["endpoint"], True)
                check_endpoint(ep.address, ep.bind, sec, f"{s.name} input")
            for o in s.outputs:
                ep = parse_endpoint(o["endpoint"], True)
                check_endpoint(ep.address, ep.bind, sec, f"{s.name} -> {o['name']}")
    except SecurityError as e:
        raise ConfigError(f"{gc.path}: {e}") from None


def describe_edges(specs: list[NodeSpec]) -> list[str]:
    lines = []
    for s in specs:
        for i in s.inputs:
            lines.append(f"{i['name']} -> {s.name}: {i['endpoint']} ({i['policy']})")
        for o in s.outputs:
            if o["name"] == "detector_feed":
                lines.append(f"{s.name} -> detector feed: {o['endpoint']} (pub, drops for slow subscribers)")
    return lines


# -- building a node's object inside its worker ------------------------------------------------------
def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def instantiate(spec: dict, **source_options: Any) -> Any:
    """The source/stage/sink object of a node spec (no I/O: that happens in start()).

    `source_options` are extra fields for a source's *Config (the runner's clock origin)."""
    name, cfg = spec["name"], dict(spec["config"])
    where = f"{name}"
    name = name.split(PAIR_SEP)[0]     # the nodes of camera pair NAME are capture_vis@NAME, ...
    if name.startswith("capture_"):
        from stages import capture
        from thermal.camera import IrCameraSource, split_camera_options
        url = cfg.pop("url")
        config = _source_config(url, spec["extra"]["modality"], spec.get("stream", "site0"), cfg, where)
        if source_options:
            config = dataclasses.replace(config, **source_options)
        source = _import(spec["factory"])(config) if spec.get("factory") else capture.open_source(config)
        _, camera = split_camera_options(cfg, spec["extra"]["modality"], where)
        return source if camera is None else IrCameraSource(source, camera)
    if name == "registration":
        from stages.registration import RegistrationStage
        config = build(RegistrationConfig, cfg, where)
        make = _import(spec["factory"]) if spec.get("factory") else RegistrationStage
        return make(config)
    if name == "fusion":
        from stages.fusion import FusionStage
        config = build(FusionConfig, cfg, where)
        make = _import(spec["factory"]) if spec.get("factory") else FusionStage
        return make(config)
    if name == "recorder":
        from stages.sinks.recorder import RecorderSink
        config = _sink_config("recorder", cfg, where)
        return (_import(spec["factory"]) if spec.get("factory") else RecorderSink)(config)
    if name == "image_dump":
        from stages.sinks import image_dump
        config = _sink_config("image_dump", cfg, where)
        return (_import(spec["factory"]) if spec.get("factory") else image_dump.ImageDumpSink)(config)
    raise ValueError(f"unknown node {name!r} (expected one of {NODES})")
