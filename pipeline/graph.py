"""The pipeline graph: the validated config of a whole pipeline, and the node specs built from it.

    capture_vis --\\
                   >-- registration --> fusion --+--> recorder
    capture_ir  --/                              +--> detector feed (ZeroMQ PUB, not a node)
                                                 +--> image_dump (optional)

Each node becomes a JSON-able spec (`NodeSpec.to_dict()`) that `pipeline.worker` runs in a
thread or a process. Every non-source node binds its own input (a PULL socket); upstream nodes
connect to it. The queue policy of every edge is decided here and printed at startup:
live sources -> "drop_oldest" on every edge; file sources -> "block" (lossless).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import (CONFIG_VERSION, ConfigError, DetectorFeedConfig, EndpointsConfig, PipelineConfig,
                             build, dataclass_to_dict, load_yaml)
from pipeline.transport import EndpointError, parse_endpoint
from stages.fusion import FusionConfig
from stages.registration import RegistrationConfig

NODES = ("capture_vis", "capture_ir", "registration", "fusion", "recorder", "image_dump")
SECTIONS = ("version", "pipeline", *NODES, "detector_feed", "endpoints")
LATENCY_NODE = "fusion"   # latency "capture -> fused" is measured at fusion's output


# -- capture sections ------------------------------------------------------------------------------
def source_kind(url: str) -> str:
    """'synthetic' | 'rtsp' | 'file' | 'folder' from a capture URL (no I/O beyond a stat)."""
    if url.startswith("synthetic:"):
        return "synthetic"
    if url.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if any(ch in url for ch in "*?[") or Path(url).is_dir():
        return "folder"
    return "file"


def source_is_live(url: str, options: dict) -> bool:
    """Live sources (cameras, paced synthetic) drop the oldest frame when late; files never do."""
    kind = source_kind(url)
    if kind == "rtsp":
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
class GraphConfig:
    """A whole pipeline, validated. `raw` keeps the YAML mapping for logging (masked)."""
    path: str
    pipeline: PipelineConfig
    capture_vis: CaptureSection
    capture_ir: CaptureSection
    registration: RegistrationConfig
    fusion: FusionConfig
    recorder: SinkSection
    detector_feed: DetectorFeedConfig
    image_dump: SinkSection
    endpoints: EndpointsConfig
    raw: dict = field(default_factory=dict)


def _section(data: dict, name: str) -> dict:
    value = data.get(name) or {}
    return value


# Where each source kind keeps its *Config (stages/capture/, engineer B's modules).
SOURCE_CONFIGS = {
    "synthetic": ("stages.capture.synthetic", "SyntheticConfig"),
    "rtsp": ("stages.capture.rtsp", "RtspConfig"),
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
    opts = dict(options)
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


def validate(data: dict, where: str) -> GraphConfig:
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{where}: {key}: unknown section (expected one of: {', '.join(SECTIONS)})")
    if data.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{where}: version: expected {CONFIG_VERSION}, got {data.get('version')!r}")
    pipeline = build(PipelineConfig, _section(data, "pipeline"), f"{where}: pipeline")
    captures = {}
    for node, modality in (("capture_vis", "vis"), ("capture_ir", "ir")):
        sec = dict(_section(data, node))
        if not isinstance(sec, dict):
            raise ConfigError(f"{where}: {node}: expected a mapping of keys")
        url = sec.pop("url", None)
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{where}: {node}.url: required (synthetic://, rtsp://..., a video file or an image folder)")
        _source_config(url, modality, pipeline.stream, sec, f"{where}: {node}")   # validates only
        captures[node] = CaptureSection(url=url, options=sec)
    registration = build(RegistrationConfig, _section(data, "registration"), f"{where}: registration")
    fusion = build(FusionConfig, _section(data, "fusion"), f"{where}: fusion")
    sinks = {}
    for node in ("recorder", "image_dump"):
        sec = dict(_section(data, node))
        enabled = sec.pop("enabled", node == "recorder")
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: {node}.enabled: expected true or false, got {enabled!r}")
        _sink_config(node, sec, f"{where}: {node}")
        sinks[node] = SinkSection(enabled=enabled, options=sec)
    feed = build(DetectorFeedConfig, _section(data, "detector_feed"), f"{where}: detector_feed")
    endpoints = build(EndpointsConfig, _section(data, "endpoints"), f"{where}: endpoints")
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
    return GraphConfig(path=where, pipeline=pipeline, capture_vis=captures["capture_vis"],
                       capture_ir=captures["capture_ir"], registration=registration, fusion=fusion,
                       recorder=sinks["recorder"], detector_feed=feed, image_dump=sinks["image_dump"],
                       endpoints=endpoints, raw=data)


def effective_config(gc: GraphConfig) -> dict:
    """Every key of every section with its value in force (defaults filled in), for the log.

    Mask it (pipeline.config.mask_secrets) before printing: capture URLs may hold passwords."""
    out: dict[str, Any] = {"version": CONFIG_VERSION, "pipeline": dataclass_to_dict(gc.pipeline)}
    for node, modality in (("capture_vis", "vis"), ("capture_ir", "ir")):
        sec = getattr(gc, node)
        cfg = _source_config(sec.url, modality, gc.pipeline.stream, sec.options, node)
        out[node] = {"url": sec.url, **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("url", "path")}}
    out["registration"] = dataclass_to_dict(gc.registration)
    out["fusion"] = dataclass_to_dict(gc.fusion)
    for node in ("recorder", "image_dump"):
        sec = getattr(gc, node)
        out[node] = {"enabled": sec.enabled, **dataclasses.asdict(_sink_config(node, sec.options, node))}
    out["detector_feed"] = dataclass_to_dict(gc.detector_feed)
    out["endpoints"] = {k: v for k, v in dataclass_to_dict(gc.endpoints).items() if v}
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
    batch: int = 1
    factory: str = ""              # "module:callable" taking the node's *Config (tests, plugins)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _ipc_dir(cfg: PipelineConfig) -> str:
    if cfg.ipc_dir:
        Path(cfg.ipc_dir).mkdir(parents=True, exist_ok=True)
        return cfg.ipc_dir
    return tempfile.mkdtemp(prefix="smokefusion-")


def build_specs(gc: GraphConfig, mode: str, factories: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes of the graph with their endpoints and edge policies."""
    pc = gc.pipeline
    live = {node: source_is_live(sec.url, sec.options)
            for node, sec in (("capture_vis", gc.capture_vis), ("capture_ir", gc.capture_ir))}
    if pc.policy == "auto":
        lossy = any(live.values())
    else:
        lossy = pc.policy == "live"
    policy = "drop_oldest" if lossy else "block"
    base = _ipc_dir(pc) if mode == "process" else ""
    run_id = f"{os.getpid()}-{id(gc):x}"

    def default_input(key: str) -> str:
        if mode == "thread":
            return f"pull+bind:inproc://{run_id}-{key}"
        return f"pull+bind:ipc://{base}/{key}.sock"

    def input_of(key: str) -> tuple[str, str]:
        """(the consuming node's input endpoint, what upstream uses) for endpoints.<key>."""
        own = getattr(gc.endpoints, key) or default_input(key)
        peer = getattr(gc.endpoints, f"{key}_peer")
        if not peer:
            ep = parse_endpoint(own, True)
            peer = str(ep.peer("push"))
        return own, peer

    fus_in, fus_peer = input_of("fusion")
    inp = lambda ep, name: {"endpoint": ep, "policy": policy, "queue_len": pc.queue_len, "name": name}
    out = lambda ep, name: {"endpoint": ep, "block": not lossy, "name": name}

    specs = []
    reg_inputs = []
    for node, sec, modality in (("capture_vis", gc.capture_vis, "vis"), ("capture_ir", gc.capture_ir, "ir")):
        # One registration input per camera, so lossless runs can merge the two in time order.
        r_in, r_peer = input_of(f"registration_{modality}")
        reg_inputs.append(inp(r_in, node))
        specs.append(NodeSpec(name=node, role="source", config={"url": sec.url, **sec.options},
                              inputs=[], outputs=[out(r_peer, "registration")],
                              extra={"modality": modality}))
    reg_cfg = dataclass_to_dict(gc.registration)
    reg_cfg["stream"] = reg_cfg["stream"] or pc.stream
    specs.append(NodeSpec(name="registration", role="stage", config=reg_cfg,
                          inputs=reg_inputs, outputs=[out(fus_peer, "fusion")], expected_eos=2))
    fusion_outputs = []
    for sink in ("recorder", "image_dump"):
        section = getattr(gc, sink)
        if not section.enabled:
            continue
        s_in, s_peer = input_of(sink)
        fusion_outputs.append(out(s_peer, sink))
        specs.append(NodeSpec(name=sink, role="sink", config=dict(section.options),
                              inputs=[inp(s_in, "fusion")], outputs=[]))
    if gc.detector_feed.enabled:
        # PUB never blocks: a slow detector loses frames, the recording never does.
        fusion_outputs.append({"endpoint": gc.detector_feed.endpoint, "block": False, "name": "detector_feed"})
    specs.insert(3, NodeSpec(name="fusion", role="stage", config=dataclass_to_dict(gc.fusion),
                             inputs=[inp(fus_in, "registration")], outputs=fusion_outputs,
                             max_outputs=pc.max_frames, batch=gc.fusion.max_batch))
    for s in specs:
        if factories and s.name in factories:
            s.factory = factories[s.name]
        if base and not pc.ipc_dir:
            s.extra["ipc_dir_auto"] = base     # the runner removes it at exit
    return specs


# endpoints.<key> -> (the node that binds it, the node(s) that connect to it)
EDGE_ENDS = {"registration_vis": ("registration", "capture_vis"), "registration_ir": ("registration", "capture_ir"),
             "fusion": ("fusion", "registration"), "recorder": ("recorder", "fusion"),
             "image_dump": ("image_dump", "fusion")}


def select_nodes(specs: list[NodeSpec], only: str, gc: GraphConfig) -> list[NodeSpec]:
    """The nodes named in `only` ("registration,fusion"), for running part of a graph on one host.

    Raises ConfigError if a name is unknown or an edge leaving the subset has no configured
    endpoint (the default ipc paths are private to one run, so the other host could not reach them)."""
    names = [s.strip() for s in only.split(",") if s.strip()]
    present = {s.name for s in specs}
    for n in names:
        if n not in present:
            raise ConfigError(f"--only {n}: not a stage of this pipeline (expected one of: {', '.join(sorted(present))})")
    chosen = [s for s in specs if s.name in names]
    # Every edge that crosses the boundary of this host must have a configured endpoint.
    needs = set()
    for s in chosen:
        if s.role == "source":
            needs.add(f"registration_{s.name.split('_')[1]}")
        if s.name == "registration":
            needs.update({"registration_vis", "registration_ir", "fusion"})
        if s.name == "fusion":
            needs.add("fusion")
            needs.update(n for n in ("recorder", "image_dump") if getattr(gc, n).enabled)
        if s.role == "sink":
            needs.add(s.name)
    for key in sorted(needs):
        local = all(x in names for x in EDGE_ENDS[key])
        if not local and not getattr(gc.endpoints, key):
            raise ConfigError(f"{gc.path}: endpoints.{key}: must be set when running --only {only} "
                              f"(the stages on the other side of this edge run elsewhere)")
    return chosen


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
    if name.startswith("capture_"):
        from stages import capture
        url = cfg.pop("url")
        config = _source_config(url, spec["extra"]["modality"], spec.get("stream", "site0"), cfg, where)
        if source_options:
            config = dataclasses.replace(config, **source_options)
        if spec.get("factory"):
            return _import(spec["factory"])(config)
        return capture.open_source(config)
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
