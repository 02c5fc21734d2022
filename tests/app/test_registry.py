"""Adding a stage is one class plus one registry line: a toy stage and a toy sink, added here
alone, are validated from their config sections, wired from their declared ports and run."""
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.registry import NODE_TYPES, load
from common.schema import ConfigError
from pipeline.graph import NodeType, build_specs
from pipeline.runner import Runner
from pipeline.stage import Sink, Stage

REPO = Path(__file__).resolve().parents[2]
COLLECTED: list = []


@dataclass
class StampConfig:
    label: str = "toy"          # written into every packet's meta["stamp"]

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("label: must not be empty")


class StampStage:
    """A toy stage: fused packets in, the same packets stamped with its label out."""
    Config = StampConfig
    inputs = ("fused",)
    outputs = ("stamped",)
    batched = False

    def __init__(self, config: StampConfig):
        self.config = config
        self.count = 0

    def start(self) -> None:
        pass

    def process(self, packet):
        self.count += 1
        packet.meta["stamp"] = self.config.label
        return [packet]

    def finish(self):
        return []

    def stop(self) -> None:
        pass

    def stats(self) -> dict:
        return {"stamped": self.count}


@dataclass
class CollectConfig:
    pass


class CollectSink:
    """A toy sink: keeps (stream, seq, stamp) of what it receives."""
    Config = CollectConfig
    inputs = ("stamped",)
    outputs: tuple = ()

    def __init__(self, config: CollectConfig):
        self.config = config

    def start(self) -> None:
        pass

    def process(self, packet):
        COLLECTED.append((packet.stream, packet.seq, packet.meta["stamp"]))
        return []

    def finish(self):
        return []

    def stop(self) -> None:
        pass

    def stats(self) -> dict:
        return {}


TOY = NODE_TYPES + (NodeType("stamp", StampStage, feeds={"fused": "fusion"}, per_pair=False),
                    NodeType("collect", CollectSink, feeds={"stamped": "stamp"}, per_pair=False))


def toy_config(tmp_path, calibration_file, **over):
    ov = {"registration.calibration": str(calibration_file), "recorder.enabled": False,
          "detector_feed.enabled": False, "fusion.fuser": "average", "pipeline.max_frames": 6,
          "pipeline.duration_s": 0, "pipeline.policy": "lossless", "capture_vis.paced": False,
          "capture_ir.paced": False, "stamp.label": "hello"}
    ov.update(over)
    return load(str(REPO / "configs" / "demo.yaml"), ov, node_types=TOY)


def test_the_toy_classes_meet_the_stage_contract():
    assert isinstance(StampStage(StampConfig()), Stage) and isinstance(CollectSink(CollectConfig()), Sink)


def test_a_toy_stage_is_wired_from_its_ports_and_runs(tmp_path, calibration_file):
    gc = toy_config(tmp_path, calibration_file)
    specs = {s.name: s for s in build_specs(gc, "thread")}
    assert [s for s in specs] == ["capture_vis", "capture_ir", "registration", "fusion", "stamp", "collect"]
    assert specs["stamp"].role == "stage" and specs["collect"].role == "sink"
    assert [o["name"] for o in specs["fusion"].outputs] == ["stamp"]
    assert specs["stamp"].inputs[0]["name"] == "fusion" and specs["collect"].inputs[0]["name"] == "stamp"
    COLLECTED.clear()
    res = Runner(list(specs.values()), mode="thread", status_out=None, startup_timeout_s=120.0,
                 latency_node="fusion").run()
    assert res.exit_code == 0, res.reason
    assert len(COLLECTED) == 6 and {stamp for _, _, stamp in COLLECTED} == {"hello"}
    assert res.stage("stamp")["stage"]["stamped"] == 6


def test_a_toy_stage_section_is_checked_like_every_other(tmp_path, calibration_file):
    with pytest.raises(ConfigError, match=r"demo.yaml: stamp\.lable: unknown key \(expected one of: label\)"):
        toy_config(tmp_path, calibration_file, **{"stamp.lable": "x"})
    with pytest.raises(ConfigError, match=r"demo.yaml: stamp\.label: must not be empty"):
        toy_config(tmp_path, calibration_file, **{"stamp.label": ""})
    gc = toy_config(tmp_path, calibration_file, **{"stamp.label": "x"})
    assert gc.config("stamp").label == "x"
