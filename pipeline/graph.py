"""The pipeline graph, built from an application's registry of node types.

A registry (app/registry.py) lists `NodeType`s: a config section, the class that runs it (which
declares its Config and its input and output ports, pipeline/stage.py) and, for each input port,
the node type feeding it. From a pipeline YAML this module builds

- `validate()`: every section checked (errors name the file and key), one `Node` per node;
  with `pairs:` the per-pair node types are copied once per camera pair (capture_vis@cam1, ...),
  each pair's sections merged over the top-level ones, and the shared nodes (fusion) take the
  inputs of every pair;
- `build_specs()`: JSON-able `NodeSpec`s with every edge wired from the declared ports, the
  endpoints and the queue policy: live sources -> "drop_oldest" on every edge; file sources ->
  "block" (lossless). Every non-source node binds its inputs (PULL); upstream nodes connect;
- `select_nodes()`: the nodes one host runs (`--only`, by node name).

This module knows no stage by name.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from common.schema import build, field_names, to_dict
from pipeline.config import (CONFIG_VERSION, ConfigError, DetectorFeedConfig, HttpConfig, PipelineConfig,
                             SecurityConfig, load_yaml, override)
from pipeline.security import SecurityError, check_endpoint
from pipeline.stage import role_of
from pipeline.transport import EndpointError, parse_endpoint

PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")   # a stream name, a node suffix, a folder name
PAIR_SEP = "@"            # node names of a pair: capture_vis@cam1, registration@cam1, recorder@cam1
RUNTIME_SECTIONS = ("detector_feed", "endpoints", "pairs", "http", "security")


@dataclass(frozen=True)
class NodeType:
    """One registry line: a config section and the node it makes.

    `stage` is the class (its Config is the section's schema); for a section whose class depends
    on its keys (a capture url), `configure(section, where, fixed) -> (class, config, meta)` builds
    both; `meta` is added to the meta of every frame packet the node's source sends."""
    name: str                                   # section name = node name (+ "@PAIR" per camera pair)
    stage: type | None = None
    feeds: Mapping[str, str] = field(default_factory=dict)   # input port -> the node type feeding it
    per_pair: bool = True                       # one per camera pair; False: one shared by all pairs
    enabled: bool | None = None                 # optional node: the default of its section's `enabled`
    fixed: Mapping[str, Any] = field(default_factory=dict)   # config keys the runner sets, with their values
    pair_dir: str = ""                          # with pairs:, this output folder key gets /<pair name>
    final: bool = False                         # the product: latency, max_frames, detector feed, live view
    configure: Callable[[dict, str, dict], tuple[type, Any, dict]] | None = None
    resolve: Callable[[Any, dict, str], Any] | None = None   # (config, {type: Node} of its pair, where) -> config


@dataclass
class Node:
    """One node of a validated graph."""
    name: str                  # "registration", or "registration@cam1" for camera pair cam1
    type: NodeType
    pair: str                  # the camera pair's name; "" without pairs:
    cls: type
    config: Any                # the built *Config
    section: dict              # the section as given (for the effective config: keys like url)
    enabled: bool = True
    meta: dict = field(default_factory=dict)   # a source's: added to every frame packet's meta

    @property
    def role(self) -> str:
        return role_of(self.cls)


@dataclass
class GraphConfig:
    """A whole pipeline, validated. `raw` keeps the YAML mapping for logging (masked)."""
    path: str
    registry: tuple[NodeType, ...]
    pipeline: PipelineConfig
    nodes: list[Node]
    pair_names: list[str]
    detector_feed: DetectorFeedConfig
    endpoints: Any             # endpoints_class(registry)
    http: HttpConfig
    security: SecurityConfig
    raw: dict = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def config(self, name: str) -> Any:
        """The *Config of node `name` ("fusion", "registration@cam2")."""
        return self.node(name).config

    def final(self) -> Node:
        return next(n for n in self.nodes if n.type.final)

    def pairs(self) -> dict[str, dict[str, Node]]:
        """Camera pair stream -> {node type: Node} of its per-pair nodes ("" -> pipeline.stream)."""
        out: dict[str, dict[str, Node]] = {}
        for n in self.nodes:
            if n.type.per_pair:
                out.setdefault(n.pair or self.pipeline.stream, {})[n.type.name] = n
        return out


# -- the registry's derived facts ------------------------------------------------------------------
def input_key(t: NodeType, port: str) -> str:
    """The endpoints key of one input: the node's name, or name_port when it has several inputs."""
    return t.name if len(t.feeds) == 1 else f"{t.name}_{port}"


def endpoints_class(registry: tuple[NodeType, ...]) -> type:
    """The `endpoints:` section's schema: every input's key and its `_peer`, "" = the runner's choice."""
    keys = [k for t in registry for port in t.feeds for k in (input_key(t, port), input_key(t, port) + "_peer")]
    return dataclasses.make_dataclass("EndpointsConfig", [(k, str, field(default="")) for k in keys])


def _downstream_of_shared(registry: tuple[NodeType, ...]) -> set[str]:
    """Per-pair node types fed (directly or not) by a shared one: they come after it in the graph."""
    by = {t.name: t for t in registry}
    out: set[str] = set()
    changed = True
    while changed:
        changed = False
        for t in registry:
            if t.name not in out and any(not by[u].per_pair or u in out for u in t.feeds.values()):
                out.add(t.name)
                changed = True
    return {n for n in out if by[n].per_pair}


# -- validation ------------------------------------------------------------------------------------
def load_graph_config(path: str | Path, registry: tuple[NodeType, ...],
                      overrides: dict[str, Any] | None = None) -> GraphConfig:
    """Read, override (`{"fusion.fuser": "average"}`) and validate a pipeline YAML."""
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        override(data, dotted, value)
    return validate(data, str(path), registry)


def _mapping(value: Any, where: str, what: str = "a mapping of keys") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    return dict(value)


def _make_node(t: NodeType, section: dict, pair: str, stream: str, where: str) -> Node:
    """Build one node from its section: `enabled`, the runner's keys, the class and its *Config."""
    section = dict(section)
    enabled = True
    if t.enabled is not None:
        enabled = section.pop("enabled", t.enabled)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
    fixed = {**t.fixed, "stream": stream}
    meta: dict = {}
    if t.configure is not None:
        cls, config, meta = t.configure(section, where, fixed)
    else:
        cls = t.stage
        if "stream" in field_names(cls.Config):
            if pair and "stream" in section:
                raise ConfigError(f"{where}.stream: set by the runner from the pair's name; remove it")
            section = {**section, "stream": pair or section.get("stream") or stream}
        config = build(cls.Config, section, where)
    return Node(name=t.name + (PAIR_SEP + pair if pair else ""), type=t, pair=pair, cls=cls, config=config,
                section=section, enabled=enabled, meta=meta)


def _pair_nodes(data: dict, registry: tuple[NodeType, ...], where: str) -> list[Node]:
    """The per-pair nodes of every entry of `pairs:`, each section merged over the top-level one."""
    per_pair = [t for t in registry if t.per_pair]
    keys = ("name", *(t.name for t in per_pair))
    pairs = data["pairs"]
    if not isinstance(pairs, list) or not pairs:
        raise ConfigError(f"{where}: pairs: expected a non-empty list of camera pairs "
                          f"(each a mapping with keys {', '.join(keys)})")
    shared_keys = [k for t in registry if not t.per_pair for port in t.feeds
                   for k in (input_key(t, port), input_key(t, port) + "_peer")]
    for t in per_pair:
        if t.configure is not None and data.get(t.name) is not None:
            raise ConfigError(f"{where}: {t.name}: not used when pairs: is set (give each pair its own {t.name})")
    for key, value in _mapping(data.get("endpoints"), f"{where}: endpoints").items():
        if value and key not in shared_keys:
            raise ConfigError(f"{where}: endpoints.{key}: per-pair endpoints are not supported with pairs: "
                              f"(only {', '.join(shared_keys)} may be set)")
    for t in per_pair:
        if isinstance(data.get(t.name), dict) and data[t.name].get("stream"):
            raise ConfigError(f"{where}: {t.name}.stream: not used when pairs: is set (each pair's name is its stream)")
    out, seen = [], set()
    for i, pair in enumerate(pairs):
        at = f"pairs[{i}]"
        if not isinstance(pair, dict):
            raise ConfigError(f"{where}: {at}: expected a mapping with keys {', '.join(keys)}, got {pair!r}")
        for key in pair:
            if key not in keys:
                raise ConfigError(f"{where}: {at}.{key}: unknown key (expected one of: {', '.join(keys)})")
        name = pair.get("name")
        if not isinstance(name, str) or not PAIR_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {at}.name: required, 1-32 letters, digits, '_' or '-' "
                              f"(the pair's stream name), got {name!r}")
        if name in seen:
            raise ConfigError(f"{where}: {at}.name: {name!r} is used by another pair (names must be unique)")
        seen.add(name)
        for t in per_pair:
            own = pair.get(t.name)
            if t.configure is not None:         # sources: each pair has its own
                if own is None:
                    raise ConfigError(f"{where}: {at}.{t.name}: required (each pair has its own cameras)")
                section = own
            else:
                section = {**_mapping(data.get(t.name), f"{where}: {t.name}"),
                           **_mapping(own, f"{where}: {at}.{t.name}")}
                if t.pair_dir and t.pair_dir not in (own or {}):
                    # Each pair writes into its own folder under the shared one.
                    base = section.get(t.pair_dir, getattr(t.stage.Config(), t.pair_dir))
                    section[t.pair_dir] = str(Path(str(base)) / name)
            out.append(_make_node(t, _mapping(section, f"{where}: {at}.{t.name}"), name, name,
                                  f"{where}: {at}.{t.name}"))
    return out


def validate(data: dict, where: str, registry: tuple[NodeType, ...]) -> GraphConfig:
    """The checked graph of a pipeline mapping; ConfigError (one line, naming `where` and the key)."""
    sections = ("version", "pipeline", *(t.name for t in registry), *RUNTIME_SECTIONS)
    for key in data:
        if key not in sections:
            raise ConfigError(f"{where}: {key}: unknown section (expected one of: {', '.join(sections)})")
    if data.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{where}: version: expected {CONFIG_VERSION}, got {data.get('version')!r}")
    pipeline = build(PipelineConfig, data.get("pipeline"), f"{where}: pipeline")
    nodes = _pair_nodes(data, registry, where) if "pairs" in data else []
    pair_names = list(dict.fromkeys(n.pair for n in nodes))
    for t in registry:
        if not pair_names or not t.per_pair:
            at = f"{where}: {t.name}"
            nodes.append(_make_node(t, _mapping(data.get(t.name), at), "", pipeline.stream, at))
    feed = build(DetectorFeedConfig, data.get("detector_feed"), f"{where}: detector_feed")
    endpoints = build(endpoints_class(registry), data.get("endpoints"), f"{where}: endpoints")
    http = build(HttpConfig, data.get("http"), f"{where}: http")
    security = build(SecurityConfig, data.get("security"), f"{where}: security")
    if http.listen:
        try:
            parse_endpoint(f"pull+bind:tcp://{http.listen}", pipeline.allow_public_bind)
        except EndpointError:
            raise ConfigError(f"{where}: http.listen: {http.listen!r} is not a loopback address; the metrics and "
                              f"live view would be open to the network: use 127.0.0.1:PORT or set "
                              f"pipeline.allow_public_bind: true") from None
    try:
        if feed.enabled:
            parse_endpoint(feed.endpoint, pipeline.allow_public_bind)
        for key, value in to_dict(endpoints).items():
            if value:
                parse_endpoint(value, pipeline.allow_public_bind)
    except EndpointError as e:
        raise ConfigError(f"{where}: {e}") from None
    gc = GraphConfig(path=where, registry=tuple(registry), pipeline=pipeline, nodes=nodes, pair_names=pair_names,
                     detector_feed=feed, endpoints=endpoints, http=http, security=security, raw=data)
    for stream, members in gc.pairs().items():
        for n in members.values():
            if n.type.resolve is not None:
                n.config = n.type.resolve(n.config, members, f"{where}: {n.name}")
    return gc


def effective_config(gc: GraphConfig) -> dict:
    """Every key of every section with its value in force (defaults filled in), for the log.

    Mask it (pipeline.config.mask_secrets) before printing: capture URLs may hold passwords."""
    def section(n: Node) -> dict:
        extra = {k: v for k, v in n.section.items() if k not in field_names(type(n.config))}
        for value in n.meta.values():       # what the node adds to its packets, defaults filled in
            extra.update(value if isinstance(value, dict) else {})
        return {**({"enabled": n.enabled} if n.type.enabled is not None else {}), **extra, **to_dict(n.config)}

    out: dict[str, Any] = {"version": CONFIG_VERSION, "pipeline": to_dict(gc.pipeline)}
    if gc.pair_names:
        out["pairs"] = [{"name": p, **{n.type.name: section(n) for n in gc.nodes if n.pair == p}}
                        for p in gc.pair_names]
    out.update({n.name: section(n) for n in gc.nodes if not n.pair})
    out["detector_feed"] = to_dict(gc.detector_feed)
    out["endpoints"] = {k: v for k, v in to_dict(gc.endpoints).items() if v}
    out["http"] = to_dict(gc.http)
    out["security"] = to_dict(gc.security)     # key file paths only, never key material
    return out


# -- node specs ------------------------------------------------------------------------------------
@dataclass
class NodeSpec:
    name: str
    role: str                      # "source" | "stage" | "sink"
    cls: str                       # "module:Class" of the source/stage/sink
    config: dict                   # the node's *Config as a mapping, rebuilt in the worker
    inputs: list[dict]             # [{"endpoint", "policy", "queue_len", "name"}]
    outputs: list[dict]            # [{"endpoint", "block", "name", "streams"?, "max_fps"?}]
    expected_eos: int = 1
    max_outputs: int = 0
    batch: int = 1                 # most packets per process_batch call
    max_wait_ms: float = 0.0       # longest the oldest packet waits for a batch to fill, ms
    meta: dict = field(default_factory=dict)       # a source's: added to every frame packet's meta
    extra: dict = field(default_factory=dict)
    security: dict = field(default_factory=dict)   # the security section: CURVE keys for tcp endpoints

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _ipc_dir(cfg: PipelineConfig) -> str:
    if cfg.ipc_dir:
        Path(cfg.ipc_dir).mkdir(parents=True, exist_ok=True)
        return cfg.ipc_dir
    return tempfile.mkdtemp(prefix="smokefusion-")


def ordered(gc: GraphConfig) -> list[Node]:
    """Enabled nodes, upstream first: each pair's nodes before the shared ones, then each pair's
    nodes fed by the shared ones (capture_vis, capture_ir, registration, fusion, recorder)."""
    after = _downstream_of_shared(gc.registry)
    on = [n for n in gc.nodes if n.enabled]
    return ([n for n in on if n.type.per_pair and n.type.name not in after]
            + [n for n in on if not n.type.per_pair]
            + [n for n in on if n.type.name in after])


def build_specs(gc: GraphConfig, mode: str, factories: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes of the graph with their endpoints and edge policies, every edge wired from the
    declared ports. `factories` maps a node name, or a node type's name (all its pairs' nodes),
    to a "module:Class" run instead of the registered one (tests)."""
    pc = gc.pipeline
    nodes = ordered(gc)
    live = [n.cls.is_live(n.config) for n in nodes if n.role == "source"]
    lossy = any(live) if pc.policy == "auto" else pc.policy == "live"
    policy = "drop_oldest" if lossy else "block"
    base = _ipc_dir(pc) if mode == "process" else ""
    run_id = f"{os.getpid()}-{id(gc):x}"
    factories = factories or {}
    specs: dict[str, NodeSpec] = {}
    for n in nodes:
        cls = factories.get(n.name) or factories.get(n.type.name) or class_path(n.cls)
        specs[n.name] = NodeSpec(name=n.name, role=n.role, cls=cls, config=to_dict(n.config), inputs=[],
                                 outputs=[], meta=dict(n.meta), extra={"stream": n.pair} if n.pair else {},
                                 security=to_dict(gc.security))
        if base and not pc.ipc_dir:
            specs[n.name].extra["ipc_dir_auto"] = base     # the runner removes it at exit
    for n in nodes:
        spec, eos = specs[n.name], 0
        for port, up_type in n.type.feeds.items():
            key = input_key(n.type, port)
            ups = [u for u in nodes if u.type.name == up_type and (u.pair == n.pair or not n.pair or not u.pair)]
            own = "" if n.pair else getattr(gc.endpoints, key)
            if not own:
                own = (f"pull+bind:inproc://{run_id}-{key}{PAIR_SEP if n.pair else ''}{n.pair}" if mode == "thread"
                       else f"pull+bind:ipc://{base}/{key}{PAIR_SEP if n.pair else ''}{n.pair}.sock")
            peer = ("" if n.pair else getattr(gc.endpoints, key + "_peer")) or str(parse_endpoint(own, True).peer("push"))
            queue = pc.queue_len * max(1, len(ups))
            if getattr(n.cls, "batched", False):
                queue = max(queue, n.config.max_batch)   # never drop pairs a batch was about to take
            spec.inputs.append({"endpoint": own, "policy": policy, "queue_len": queue,
                                "name": ups[0].name if len(ups) == 1 else up_type})
            for u in ups:
                route = {"streams": [n.pair]} if n.pair and not u.pair else {}
                specs[u.name].outputs.append({"endpoint": peer, "block": not lossy, "name": n.name, **route})
            eos += len(ups)
        spec.expected_eos = max(1, eos)
        if getattr(n.cls, "batched", False):
            spec.batch, spec.max_wait_ms = n.config.max_batch, n.config.max_wait_ms
    final = specs[gc.final().name]
    final.max_outputs = pc.max_frames
    if gc.detector_feed.enabled:
        # PUB never blocks: a slow detector loses frames, the recording never does.
        final.outputs.append({"endpoint": gc.detector_feed.endpoint, "block": False, "name": "detector_feed"})
    if gc.http.listen:
        # The live view's feed (pipeline/ops.py): PUB never blocks, and the sender skips packets
        # beyond view_fps before encoding them, so the view cannot slow the pipeline down.
        preview_dir = base or tempfile.mkdtemp(prefix="smokefusion-view-")
        final.outputs.append({"endpoint": f"pub+bind:ipc://{preview_dir}/preview.sock", "block": False,
                              "name": "preview", "max_fps": gc.http.view_fps})
        if not base:
            final.extra["ipc_dir_auto"] = preview_dir     # the runner removes it at exit
    return list(specs.values())


def _edges(gc: GraphConfig) -> list[tuple[str, str, str]]:
    """(endpoints key, upstream node, downstream node) of every socket edge of the graph."""
    nodes = ordered(gc)
    return [(input_key(n.type, port), u.name, n.name) for n in nodes for port, up in n.type.feeds.items()
            for u in nodes if u.type.name == up and (u.pair == n.pair or not n.pair or not u.pair)]


def select_nodes(specs: list[NodeSpec], only: str, gc: GraphConfig) -> list[NodeSpec]:
    """The nodes named in `only` ("registration,fusion"), for running part of a graph on one host.
    With `pairs:` a node type's name (registration) means that node of every pair.

    Raises ConfigError if a name is unknown or an edge leaving the subset has no configured
    endpoint (the default ipc paths are private to one run, so the other host could not reach them).
    With pairs: only the inputs of shared nodes (endpoints.fusion) may cross hosts."""
    names = [s.strip() for s in only.split(",") if s.strip()]
    present = {n.name: n for n in gc.nodes if n.name in {s.name for s in specs}}
    chosen: set[str] = set()
    for name in names:
        match = {p for p, n in present.items() if p == name or (gc.pair_names and n.type.name == name)}
        if not match:
            raise ConfigError(f"--only {name}: not a stage of this pipeline (expected one of: {', '.join(sorted(present))})")
        chosen |= match
    for key, up, down in _edges(gc):
        if (up in chosen) == (down in chosen) or up not in present:
            continue
        if gc.pair_names and present[down].pair:
            shared = [f"endpoints.{input_key(t, p)}" for t in gc.registry if not t.per_pair for p in t.feeds]
            raise ConfigError(f"{gc.path}: pairs: --only {only}: {up} -> {down} would cross hosts; with pairs: only "
                              f"the inputs of shared stages ({', '.join(shared)}) can, so run each pair's nodes "
                              f"on either side of them together")
        if not getattr(gc.endpoints, key):
            raise ConfigError(f"{gc.path}: endpoints.{key}: must be set when running --only {only} "
                              f"(the stages on the other side of this edge run elsewhere)")
    return [s for s in specs if s.name in chosen]


def check_security(specs: list[NodeSpec], gc: GraphConfig) -> None:
    """Refuse (ConfigError, one line) any tcp endpoint these nodes open that needs CURVE
    (security.curve) but has no usable keys, unless security.insecure. Run on the nodes this
    host runs: a split graph's hosts each hold only their own keys."""
    sec = to_dict(gc.security)
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
def instantiate(spec: dict, **config_fields: Any) -> Any:
    """The source/stage/sink object of a node spec (no I/O: that happens in start()).

    `config_fields` replace fields of its *Config (a source's clock origin, set by the runner)."""
    module, _, attr = spec["cls"].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    config = build(cls.Config, spec["config"], spec["name"])
    if config_fields:
        config = dataclasses.replace(config, **config_fields)
    return cls(config)
