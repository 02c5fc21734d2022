"""The pipeline's node types: one line per config section, naming its class and what feeds it.

    capture_vis --\\
                   >-- registration --> fusion --+--> recorder
    capture_ir  --/                              +--> detector feed (ZeroMQ PUB, not a node)
                                                 +--> image_dump (optional)

Each class declares its Config and its input/output ports (pipeline/stage.py); `feeds` maps each
input port to the node type feeding it, and pipeline.graph wires the edges from that. With
`pairs:` every per-pair node type is copied once per camera pair (capture_vis@cam1, ...); fusion
is shared and sends each fused packet back to its own pair's sinks.

Adding a stage: one module with its class, plus one line here (tests/app/test_registry.py adds a
toy stage that way).
"""
from __future__ import annotations

from typing import Any

from common.schema import ConfigError
from pipeline.graph import GraphConfig, Node, NodeType, load_graph_config, validate
from stages.capture import source_class, source_config
from stages.fusion import FusionStage
from stages.registration import RegistrationStage, resolve_calibration
from stages.sinks.image_dump import ImageDumpSink
from stages.sinks.recorder import RecorderSink
from thermal.camera import split_camera_options

RUNNER_KEYS = ("url", "path", "modality", "stream")   # a capture section's keys the runner sets


def capture(section: dict, where: str, fixed: dict) -> tuple[type, Any, dict]:
    """A capture section -> (source class, its config, the meta of its frames): `url` picks the
    source, the other keys are that source's options, except `agc` and `radiometric`, which
    describe an IR camera's counts and travel in every frame's meta (thermal/camera.py);
    modality and stream come from the node and the pair."""
    section, camera = split_camera_options(dict(section), fixed["modality"], where)
    url = section.pop("url", None)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}.url: required (synthetic://, rtsp://..., a video file or an image folder)")
    for key in RUNNER_KEYS:
        if key in section:
            raise ConfigError(f"{where}.{key}: set by the runner (from url:, the section name and "
                              f"pipeline.stream); remove it")
    cls = source_class(url)
    meta = {"ir_camera": camera.to_meta()} if camera is not None else {}
    return cls, source_config(url, where=where, error=ConfigError, **section, **fixed), meta


def calibration(config: Any, pair: dict[str, Node], where: str) -> Any:
    """registration.calibration "" decided: the demo calibration for the synthetic source, else an
    estimate at start written beside the recording (stages.registration.resolve_calibration)."""
    kinds = (pair["capture_vis"].cls.kind, pair["capture_ir"].cls.kind)
    return resolve_calibration(config, kinds, str(pair["recorder"].config.out_dir))


NODE_TYPES: tuple[NodeType, ...] = (
    NodeType("capture_vis", configure=capture, fixed={"modality": "vis"}),
    NodeType("capture_ir", configure=capture, fixed={"modality": "ir"}),
    NodeType("registration", RegistrationStage, feeds={"vis": "capture_vis", "ir": "capture_ir"},
             resolve=calibration),
    NodeType("fusion", FusionStage, feeds={"pairs": "registration"}, per_pair=False, final=True),
    NodeType("recorder", RecorderSink, feeds={"fused": "fusion"}, enabled=True, pair_dir="out_dir"),
    NodeType("image_dump", ImageDumpSink, feeds={"fused": "fusion"}, enabled=False, pair_dir="out_dir"),
)
NODES = tuple(t.name for t in NODE_TYPES)


def load(path: str, overrides: dict[str, Any] | None = None,
         node_types: tuple[NodeType, ...] = NODE_TYPES) -> GraphConfig:
    """Read, override (`{"fusion.fuser": "average"}`) and validate a pipeline YAML."""
    return load_graph_config(path, node_types, overrides)


def check(data: dict, where: str, node_types: tuple[NodeType, ...] = NODE_TYPES) -> GraphConfig:
    """Validate a pipeline mapping (ConfigError, one line, naming `where` and the key)."""
    return validate(data, where, node_types)

