"""Pipeline config validation: every shipped config loads; bad keys and values name the key."""
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, mask_secrets
from app.registry import check, load
from pipeline.graph import build_specs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "rtsp.yaml", "files.yaml", "pairs.yaml"])
def test_shipped_configs_validate(name):
    gc = load(REPO / "configs" / name)
    assert gc.pipeline.stream and gc.config("fusion").fuser in ("lmfusion", "laplacian", "average")


def demo_data() -> dict:
    return yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())


def test_unknown_key_names_file_section_key_and_the_expected_keys():
    data = demo_data()
    data["fusion"]["fuserr"] = "laplacian"
    with pytest.raises(ConfigError) as e:
        check(data, "configs/demo.yaml")
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
    ("fusion", "max_wait_ms", -1, "fusion.max_wait_ms: must be in 0..10000 ms, got -1"),
    ("fusion", "max_wait_ms", "soon", "fusion.max_wait_ms: expected a number"),
    ("fusion", "model", "huge", "fusion.model: 'huge' is not one of auto, default, paper"),
    ("fusion", "resolution_scale", 3, "fusion.resolution_scale: must be 1, 2, 4 or auto, got 3"),
    ("fusion", "max_batch", 0, "fusion.max_batch: must be in 1..64, got 0"),
])
def test_bad_values_are_errors_that_name_the_key(section, key, value, match):
    data = demo_data()
    data[section][key] = value
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("(", r"\(")):
        check(data, "demo")


def test_unknown_section_missing_url_and_wrong_version():
    data = demo_data()
    data["fussion"] = {}
    with pytest.raises(ConfigError, match="fussion: unknown section"):
        check(data, "x.yaml")
    data = demo_data()
    del data["capture_ir"]["url"]
    with pytest.raises(ConfigError, match="capture_ir.url: required"):
        check(data, "x.yaml")
    data = demo_data()
    data["version"] = 2
    with pytest.raises(ConfigError, match="version: expected 1, got 2"):
        check(data, "x.yaml")


def test_unreadable_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npipeline: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)


def test_rtsp_passwords_are_masked_in_the_effective_config():
    data = yaml.safe_load((REPO / "configs" / "rtsp.yaml").read_text())
    data["capture_vis"]["url"] = "rtsp://admin:hunter2@10.0.0.5:554/live"
    masked = repr(mask_secrets(data))
    assert "hunter2" not in masked and "rtsp://admin:***@10.0.0.5:554/live" in masked


def test_edge_policy_follows_the_sources():
    live = build_specs(load(REPO / "configs" / "demo.yaml"), "thread")
    files = build_specs(load(REPO / "configs" / "files.yaml"), "thread")
    assert {i["policy"] for s in live for i in s.inputs} == {"drop_oldest"}
    assert {i["policy"] for s in files for i in s.inputs} == {"block"}
    assert all(o["block"] for s in files for o in s.outputs if o["name"] != "detector_feed")
    forced = build_specs(load(REPO / "configs" / "demo.yaml", {"pipeline.policy": "lossless"}), "thread")
    assert {i["policy"] for s in forced for i in s.inputs} == {"block"}


def test_effective_config_fills_defaults_and_masks_passwords():
    from pipeline.graph import effective_config
    gc = load(REPO / "configs" / "rtsp.yaml",
                           {"capture_ir.url": "rtsp://op:pa55word@192.0.2.11/ir"})
    eff = mask_secrets(effective_config(gc))
    assert eff["capture_ir"]["url"] == "rtsp://op:***@192.0.2.11/ir"
    assert eff["capture_ir"]["modality"] == "ir" and "read_timeout_s" in eff["capture_ir"]
    assert eff["recorder"]["crf"] == 23 and eff["fusion"]["fallback"] == "laplacian"
    assert "pa55word" not in repr(eff)


# -- several camera pairs into one fusion stage ------------------------------------------------------
def pairs_data() -> dict:
    return yaml.safe_load((REPO / "configs" / "pairs.yaml").read_text())


def test_pairs_build_per_pair_nodes_routed_by_stream_around_one_fusion_stage():
    gc = load(REPO / "configs" / "pairs.yaml", {"fusion.max_batch": 2, "fusion.max_wait_ms": 20.0})
    assert gc.pair_names == ["cam1", "cam2"] and "capture_vis" not in [n.name for n in gc.nodes]
    specs = {s.name: s for s in build_specs(gc, "thread")}
    assert sorted(specs) == sorted(["capture_vis@cam1", "capture_ir@cam1", "registration@cam1", "recorder@cam1",
                                    "capture_vis@cam2", "capture_ir@cam2", "registration@cam2", "recorder@cam2",
                                    "fusion"])
    fusion = specs["fusion"]
    assert fusion.expected_eos == 2 and fusion.batch == 2 and fusion.max_wait_ms == 20.0
    routes = {o["name"]: o.get("streams") for o in fusion.outputs}
    assert routes == {"recorder@cam1": ["cam1"], "recorder@cam2": ["cam2"], "detector_feed": None}
    # Each pair's registration feeds the one fusion input; its packets carry the pair's name.
    assert {specs[f"registration@{n}"].outputs[0]["endpoint"] for n in ("cam1", "cam2")} == \
        {fusion.inputs[0]["endpoint"].replace("pull+bind", "push+connect")}
    assert specs["registration@cam2"].config["stream"] == "cam2" and specs["capture_ir@cam2"].extra["stream"] == "cam2"
    assert fusion.inputs[0]["queue_len"] == 4          # live: queue_len per pair
    # Defaults come from the top-level sections; each pair records into its own folder.
    assert specs["recorder@cam1"].config["out_dir"] == "out/pairs/cam1"
    assert gc.config("registration@cam2").tolerance_ms == 35.0


def test_single_pair_configs_keep_their_node_names():
    names = [s.name for s in build_specs(load(REPO / "configs" / "demo.yaml"), "thread")]
    assert names == ["capture_vis", "capture_ir", "registration", "fusion", "recorder"]


def _pairs_error(edit) -> str:
    data = pairs_data()
    edit(data)
    with pytest.raises(ConfigError) as e:
        check(data, "p.yaml")
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["pairs"][1].update(cams=1), "p.yaml: pairs[1].cams: unknown key (expected one of: name, capture_vis"),
    (lambda d: d["pairs"][1].update(name="cam1"), "p.yaml: pairs[1].name: 'cam1' is used by another pair"),
    (lambda d: d["pairs"][0].update(name="cam 1"), "p.yaml: pairs[0].name: required, 1-32 letters"),
    (lambda d: d["pairs"][0].pop("capture_ir"), "p.yaml: pairs[0].capture_ir: required"),
    (lambda d: d["pairs"][0]["capture_vis"].pop("url"), "p.yaml: pairs[0].capture_vis.url: required"),
    (lambda d: d["pairs"][0]["capture_vis"].update(smokey=1), "p.yaml: pairs[0].capture_vis.smokey: unknown key"),
    (lambda d: d["pairs"][1]["registration"].update(tolerance_ms=-1), "p.yaml: pairs[1].registration.tolerance_ms: must be > 0"),
    (lambda d: d["pairs"][1]["registration"].update(stream="x"), "p.yaml: pairs[1].registration.stream: set by the runner"),
    (lambda d: d["pairs"][0].update(recorder={"crf": "high"}), "p.yaml: pairs[0].recorder.crf: expected an integer"),
    (lambda d: d.update(capture_vis={"url": "synthetic://"}), "p.yaml: capture_vis: not used when pairs: is set"),
    (lambda d: d.update(endpoints={"recorder": "pull+bind:tcp://127.0.0.1:5999"}), "p.yaml: endpoints.recorder: per-pair endpoints are not supported"),
    (lambda d: d.update(pairs=[]), "p.yaml: pairs: expected a non-empty list"),
    (lambda d: d.update(pairs=["cam1"]), "p.yaml: pairs[0]: expected a mapping"),
])
def test_bad_pairs_are_one_line_errors_naming_the_pair_and_key(edit, match):
    assert _pairs_error(edit).startswith(match)


def test_only_with_pairs_splits_at_the_fusion_input():
    from pipeline.graph import select_nodes
    ep = {"endpoints": {"fusion": "pull+bind:tcp://127.0.0.1:5999"}}
    data = yaml.safe_load((REPO / "configs" / "pairs.yaml").read_text())
    gc = check({**data, **ep}, "p.yaml")
    specs = build_specs(gc, "process")
    # A base name means that node of every pair; the registration -> fusion edge crosses hosts.
    a = select_nodes(specs, "capture_vis,capture_ir,registration", gc)
    assert sorted(s.name for s in a) == ["capture_ir@cam1", "capture_ir@cam2", "capture_vis@cam1",
                                        "capture_vis@cam2", "registration@cam1", "registration@cam2"]
    b = select_nodes(specs, "fusion,recorder", gc)
    assert sorted(s.name for s in b) == ["fusion", "recorder@cam1", "recorder@cam2"]
    # Without endpoints.fusion the crossing edge has nowhere to go.
    gc0 = check(data, "p.yaml")
    with pytest.raises(ConfigError, match="endpoints.fusion: must be set when running --only fusion,recorder"):
        select_nodes(build_specs(gc0, "process"), "fusion,recorder", gc0)
    # Per-pair edges (ipc inside one run) cannot cross hosts.
    with pytest.raises(ConfigError, match="capture_vis@cam1 -> registration@cam1 would cross hosts"):
        select_nodes(specs, "capture_vis", gc)
    with pytest.raises(ConfigError, match="fusion -> recorder@cam1 would cross hosts"):
        select_nodes(specs, "capture_vis,capture_ir,registration,fusion", gc)
