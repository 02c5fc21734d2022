"""Fusion stage, called directly: which fuser runs is explicit and recorded in every packet."""
import logging

import numpy as np
import pytest

from pipeline.packet import Packet
from stages.fusion import FusionConfig, FusionError, FusionStage


def pair(seq=0, h=64, w=80):
    rng = np.random.default_rng(seq)
    return Packet("s", "pair", seq, 1.0 + seq, 2.0 + seq, pts=0.1 * seq,
                  buffers={"vis": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                           "ir": rng.integers(0, 255, (h, w), dtype=np.uint8)},
                  meta={"skew_ms": 1.5, "vis_seq": 2 * seq, "ir_seq": seq, "calibration_id": "abc"})


@pytest.mark.parametrize("name", ["laplacian", "average"])
def test_classical_fusers_make_fused_packets_and_say_so(name):
    from lmfusion import baselines
    st = FusionStage(FusionConfig(fuser=name))
    st.start()
    p = pair(3)
    [out] = st.process(p)
    assert out.kind == "fused" and out.seq == 3 and out.t_mono == p.t_mono and out.pts == p.pts
    assert out.meta["fuser"] == name and out.meta["skew_ms"] == 1.5 and out.meta["ir_seq"] == 3
    assert out.buffers["fused"].shape == (64, 80, 3) and out.buffers["fused"].dtype == np.uint8
    ref = baselines.fuse_laplacian(p.buffers["vis"], p.buffers["ir"], levels=4) if name == "laplacian" \
        else baselines.fuse_average(p.buffers["vis"], p.buffers["ir"])
    np.testing.assert_array_equal(out.buffers["fused"], ref)
    assert st.stats()["fuser"] == name


def test_batch_keeps_order_and_declares_its_ports():
    st = FusionStage(FusionConfig(fuser="average"))
    st.start()
    out = st.process_batch([pair(0), pair(1)])
    assert [p.kind for p in out] == ["fused", "fused"] and [p.seq for p in out] == [0, 1]
    assert st.finish() == [] and FusionStage.batched and FusionStage.inputs == ("pairs",)


def test_lmfusion_without_weights_is_a_clear_error(tmp_path):
    st = FusionStage(FusionConfig(fuser="lmfusion", weights_dir=str(tmp_path / "no-weights")))
    with pytest.raises(FusionError, match="fusion.fuser: lmfusion cannot load from .*no-weights.*fallback") as e:
        st.start()
    assert "\n" not in str(e.value)


def test_lmfusion_fallback_is_announced_and_recorded(tmp_path, caplog):
    st = FusionStage(FusionConfig(fuser="lmfusion", fallback="laplacian", weights_dir=str(tmp_path / "none")))
    with caplog.at_level(logging.WARNING):
        st.start()
    assert any("fallback fuser 'laplacian'" in r.getMessage() for r in caplog.records)
    assert st.process(pair())[0].meta["fuser"] == "laplacian"


def test_wrong_packet_kind_is_an_error():
    st = FusionStage(FusionConfig(fuser="average"))
    st.start()
    bad = pair()
    bad.kind = "frame"
    with pytest.raises(FusionError, match="expects pair packets"):
        st.process(bad)


def test_fp16_on_cpu_is_a_config_error():
    with pytest.raises(ValueError, match="precision: fp16 needs device: cuda"):
        FusionConfig(precision="fp16", device="cpu")


def test_lmfusion_runs_when_weights_exist(tmp_path):
    # Untrained weights of the real architecture: this checks the wiring, not the quality.
    import torch
    from lmfusion import preset
    from lmfusion.networks import LMFusionNet
    from lmfusion.weights import save_model
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("default")), tmp_path / "lmfusion.safetensors", {"note": "untrained, test"})
    st = FusionStage(FusionConfig(fuser="lmfusion", weights_dir=str(tmp_path), model="default",
                                  engine="torch", resolution_scale=1))
    st.start()
    out = st.process_batch([pair(0), pair(1)])
    assert [p.meta["fuser"] for p in out] == ["lmfusion", "lmfusion"]
    assert out[0].buffers["fused"].shape == (64, 80, 3) and out[0].buffers["fused"].dtype == np.uint8


def test_a_batch_of_several_camera_pairs_keeps_each_packet_its_stream_and_groups_sizes():
    st = FusionStage(FusionConfig(fuser="average", max_batch=4))
    st.start()
    a0, b0, a1 = pair(0), pair(1, h=32, w=48), pair(2)
    a0.stream, b0.stream, a1.stream = "cam1", "cam2", "cam1"
    out = st.process_batch([a0, b0, a1])
    assert [(p.stream, p.seq, p.buffers["fused"].shape) for p in out] == \
        [("cam1", 0, (64, 80, 3)), ("cam2", 1, (32, 48, 3)), ("cam1", 2, (64, 80, 3))]
    from lmfusion import baselines
    np.testing.assert_array_equal(out[1].buffers["fused"], baselines.fuse_average(b0.buffers["vis"], b0.buffers["ir"]))
    st.process_batch([pair(3)])
    s = st.stats()
    # Two batches (3 pairs, then 1), three fuser calls (two frame sizes in the first batch).
    assert (s["batches"], s["fuse_calls"], s["max_batch_seen"], s["mean_batch"]) == (2, 3, 3, 2.0)
    assert s["per_stream"] == {"cam1": 2, "cam2": 1, "s": 1}


def test_engine_options_come_from_the_section():
    assert FusionConfig().engine_options() == {}
    assert FusionConfig(engine="onnxruntime", resolution_scale=2, threads=1).engine_options() == \
        {"resolution_scale": 2, "threads": 1}
    assert FusionConfig(engine="torch", threads=1).engine_options() == {}     # torch: set_num_threads
    with pytest.raises(ValueError, match="max_wait_ms: must be in 0..10000 ms, got -5"):
        FusionConfig(max_wait_ms=-5)


def test_model_at_half_resolution_loads_as_configured(tmp_path):
    # Untrained weights of the default architecture under the shipped file name: wiring, not quality.
    import torch
    from lmfusion import preset
    from lmfusion.networks import LMFusionNet
    from lmfusion.weights import save_model
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("default")), tmp_path / "lmfusion.safetensors", {"note": "untrained, test"})
    st = FusionStage(FusionConfig(fuser="lmfusion", weights_dir=str(tmp_path), model="default", resolution_scale=2,
                                  engine="torch"))
    st.start()
    out = st.process_batch([pair(0, h=128, w=160), pair(1, h=128, w=160)])   # LMF needs > 8 px at 1/8
    assert [p.meta["fuser"] for p in out] == ["lmfusion", "lmfusion"]
    assert out[0].buffers["fused"].shape == (128, 160, 3)
    assert st.fuser_for(160, 128).engine.name == "torch@1/2"


def test_auto_on_a_cpu_machine_picks_the_cpu_real_time_option():
    from stages.fusion import resolve_auto
    cfg, why = resolve_auto(FusionConfig(fuser="lmfusion"), has_cuda=False)
    assert (cfg.device, cfg.model, cfg.engine, cfg.precision, cfg.resolution_scale, cfg.threads) == \
        ("cpu", "default", "onnxruntime", "fp32", "auto", 1)          # scale: per frame size (cpu_scale)
    assert "torch sees no CUDA device" in why and "CPU real-time option" in why and "\n" not in why
    assert cfg.engine_options() == {"threads": 1}


def test_auto_on_a_cuda_machine_picks_the_full_model_in_fp16():
    from stages.fusion import resolve_auto
    cfg, why = resolve_auto(FusionConfig(fuser="lmfusion", threads=0), has_cuda=True)
    assert (cfg.device, cfg.model, cfg.engine, cfg.precision, cfg.resolution_scale, cfg.threads) == \
        ("cuda", "default", "torch", "fp16", 1, 0)
    assert "torch sees a CUDA device" in why and "full model on the GPU" in why
    assert cfg.engine_options() == {}


def test_explicit_values_win_over_auto():
    from stages.fusion import resolve_auto
    cfg, why = resolve_auto(FusionConfig(fuser="lmfusion", model="paper", threads=2), has_cuda=False)
    assert (cfg.device, cfg.model, cfg.engine, cfg.resolution_scale, cfg.threads) == ("cpu", "paper", "onnxruntime", "auto", 2)
    assert "set: model" in why
    # device cpu on a GPU machine: the CPU choices, because the device was asked for
    cfg, why = resolve_auto(FusionConfig(fuser="lmfusion", device="cpu"), has_cuda=True)
    assert (cfg.device, cfg.model, cfg.engine) == ("cpu", "default", "onnxruntime") and "fusion.device set" in why
    cfg, why = resolve_auto(FusionConfig(fuser="lmfusion", device="cpu", model="default", engine="torch",
                                         precision="fp32", resolution_scale=1), has_cuda=True)
    assert (cfg.model, cfg.engine, cfg.resolution_scale, cfg.threads) == ("default", "torch", 1, 0)
    assert why.endswith("(all set in fusion)")


def test_fp16_asked_for_on_a_machine_without_cuda_names_the_key():
    from stages.fusion import resolve_auto
    with pytest.raises(FusionError, match="fusion.precision: fp16 needs CUDA.*torch sees no CUDA device"):
        resolve_auto(FusionConfig(fuser="lmfusion", precision="fp16"), has_cuda=False)


def test_resolution_scale_takes_auto_or_a_factor():
    from common.schema import ConfigError, build
    assert build(FusionConfig, {"resolution_scale": "auto"}, "f: fusion").resolution_scale == "auto"
    assert build(FusionConfig, {"resolution_scale": 2}, "f: fusion").resolution_scale == 2
    with pytest.raises(ConfigError, match="fusion.resolution_scale: must be 1, 2, 4 or auto, got 3"):
        build(FusionConfig, {"resolution_scale": 3}, "f: fusion")


def test_the_stage_logs_and_reports_what_auto_chose(tmp_path, caplog):
    # Untrained weights of the default architecture: the auto wiring on a CPU machine, not quality.
    import torch
    from lmfusion import preset
    from lmfusion.networks import LMFusionNet
    from lmfusion.weights import save_model
    torch.manual_seed(0)
    save_model(LMFusionNet(preset("default")), tmp_path / "lmfusion.safetensors", {"note": "untrained, test"})
    st = FusionStage(FusionConfig(fuser="lmfusion", weights_dir=str(tmp_path)), has_cuda=lambda: False)
    with caplog.at_level(logging.INFO):
        st.start()
    assert st.fuser_for(320, 256).engine.name == "onnxruntime@1/2"
    lines = [r.getMessage() for r in caplog.records if "CPU real-time option" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("fusion: cpu: model default at 1/2 or 1/4 resolution")
    assert any(r.getMessage().startswith("fusion: warmed up on 320x256") for r in caplog.records)
    assert st.stats()["choice"] == lines[0].removeprefix("fusion: ")
    assert st.process(pair(0, h=128, w=160))[0].buffers["fused"].shape == (128, 160, 3)
    # A larger camera: the network stays at <= 160x128 px, loaded and logged on its first frame.
    with caplog.at_level(logging.INFO):
        [out] = st.process(pair(1, h=512, w=640))
    assert out.buffers["fused"].shape == (512, 640, 3)
    assert st.fuser_for(640, 512).engine.name == "onnxruntime@1/4"
    assert any("640x512 frames" in r.getMessage() and "network at 160x128" in r.getMessage() for r in caplog.records)


def test_cpu_scale_keeps_the_network_at_160x128_or_less():
    from stages.fusion import cpu_scale
    assert [cpu_scale(w, h) for w, h in ((160, 128), (320, 256), (640, 480), (640, 512), (1280, 1024))] == \
        [2, 2, 4, 4, 4]
