"""Pipeline config validation: every shipped config loads; bad keys and values name the key."""
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, mask_secrets
from pipeline.graph import build_specs, load_graph_config, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "rtsp.yaml", "files.yaml"])
def test_shipped_configs_validate(name):
    gc = load_graph_config(REPO / "configs" / name)
    assert gc.pipeline.stream and gc.fusion.fuser in ("lmfusion", "laplacian", "average")


def demo_data() -> dict:
    return yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())


def test_unknown_key_names_file_section_key_and_the_expected_keys():
    data = demo_data()
    data["fusion"]["fuserr"] = "laplacian"
    with pytest.raises(ConfigError) as e:
        validate(data, "configs/demo.yaml")
    msg = str(e.value)
    assert msg.startswith("configs/demo.yaml: fusion.fuserr: unknown key (expected one of: fuser, fallback, device")
    assert "\n" not in msg


@pytest.mark.parametrize("section, key, value, match", [
    ("fusion", "fuser", "magic", "fusion.fuser: 'magic' is not one of lmfusion, laplacian, average"),
    ("registration", "tolerance_ms", -5, "registration.tolerance_ms: must be > 0 ms"),
    ("registration", "tolerance_ms", "fast", "registration.tolerance_ms: expected a number"),
    ("pipeline", "max_frames", 2.5, "pipeline.max_frames: expected an integer"),
    ("pipeline", "mode", "fork", "pipeline.mode: 'fork' is not one of process, thread"),
    ("registration", "output_size", [320], "registration.output_size: must be [width, height]"),
    ("recorder", "enabled", "yes", "recorder.enabled: expected true or false"),
    ("recorder", "crf", "high", "recorder.crf: expected an integer"),
    ("capture_vis", "smokey", 1.0, "capture_vis.smokey: unknown key"),
    ("capture_vis", "modality", "ir", "capture_vis.modality: set by the runner"),
    ("detector_feed", "endpoint", "pub+bind:tcp://0.0.0.0:5560", "allow_public_bind"),
    ("endpoints", "fusion", "pull+bind:udp://x", "address must be"),
])
def test_bad_values_are_errors_that_name_the_key(section, key, value, match):
    data = demo_data()
    data[section][key] = value
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("(", r"\(")):
        validate(data, "demo")


def test_unknown_section_missing_url_and_wrong_version():
    data = demo_data()
    data["fussion"] = {}
    with pytest.raises(ConfigError, match="fussion: unknown section"):
        validate(data, "x.yaml")
    data = demo_data()
    del data["capture_ir"]["url"]
    with pytest.raises(ConfigError, match="capture_ir.url: required"):
        validate(data, "x.yaml")
    data = demo_data()
    data["version"] = 2
    with pytest.raises(ConfigError, match="version: expected 1, got 2"):
        validate(data, "x.yaml")


def test_unreadable_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_graph_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npipeline: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_graph_config(bad)


def test_rtsp_passwords_are_masked_in_the_effective_config():
    data = yaml.safe_load((REPO / "configs" / "rtsp.yaml").read_text())
    data["capture_vis"]["url"] = "rtsp://admin:hunter2@10.0.0.5:554/live"
    masked = repr(mask_secrets(data))
    assert "hunter2" not in masked and "rtsp://admin:***@10.0.0.5:554/live" in masked


def test_edge_policy_follows_the_sources():
    live = build_specs(load_graph_config(REPO / "configs" / "demo.yaml"), "thread")
    files = build_specs(load_graph_config(REPO / "configs" / "files.yaml"), "thread")
    assert {i["policy"] for s in live for i in s.inputs} == {"drop_oldest"}
    assert {i["policy"] for s in files for i in s.inputs} == {"block"}
    assert all(o["block"] for s in files for o in s.outputs if o["name"] != "detector_feed")
    forced = build_specs(load_graph_config(REPO / "configs" / "demo.yaml", {"pipeline.policy": "lossless"}), "thread")
    assert {i["policy"] for s in forced for i in s.inputs} == {"block"}


def test_effective_config_fills_defaults_and_masks_passwords():
    from pipeline.graph import effective_config
    gc = load_graph_config(REPO / "configs" / "rtsp.yaml",
                           {"capture_ir.url": "rtsp://op:pa55word@192.0.2.11/ir"})
    eff = mask_secrets(effective_config(gc))
    assert eff["capture_ir"]["url"] == "rtsp://op:***@192.0.2.11/ir"
    assert eff["capture_ir"]["modality"] == "ir" and "read_timeout_s" in eff["capture_ir"]
    assert eff["recorder"]["crf"] == 23 and eff["fusion"]["fallback"] == "laplacian"
    assert "pa55word" not in repr(eff)
