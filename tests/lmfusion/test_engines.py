"""Inference engines: ONNX Runtime vs torch, the CUDA stream pipeline's scheduling, engine errors.

CPU only by default; tests marked ``cuda`` run the real CUDA engine and skip without a GPU.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import lmfusion
from lmfusion import onnx_engine
from lmfusion.api import Fuser
from lmfusion.config import preset
from lmfusion.cuda_engine import CudaStreamEngine, PipelineScheduler
from lmfusion.engines import TorchEngine, make_engine
from lmfusion.errors import InputError, LMFusionError
from lmfusion.networks import LMFusionNet, lively_random_model
from lmfusion.onnx_engine import CPU_EP, CUDA_EP, TRT_EP, OrtEngine, choose_providers
from lmfusion.weights import save_model


def lively(cfg_name: str, seed: int = 0) -> LMFusionNet:
    """A randomly initialised network whose output is not flat.

    Fresh init makes the identity-initialised heads zero and the decoded image nearly constant,
    which would let a broken engine pass; perturb those and scale the decoder to use [0, 1].
    """
    return lively_random_model(preset(cfg_name), seed)


def pairs(b: int, h: int, w: int, seed: int = 1, colour: bool = True):
    """Smooth structured images (a gradient, blobs and noise), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    vis, ir = [], []
    for _ in range(b):
        base = 0.5 + 0.35 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy + rng.uniform(0, 6))
        v = np.clip(base[..., None] * rng.uniform(0.6, 1.0, 3) * 255 + rng.normal(0, 8, (h, w, 3)), 0, 255)
        i = np.clip((1 - base) * 255 + rng.normal(0, 8, (h, w)), 0, 255)
        vis.append(v.astype(np.uint8) if colour else v[..., 0].astype(np.uint8))
        ir.append(i.astype(np.uint8))
    return vis, ir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFUSION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


# --------------------------------------------------------------------------------------------
# ONNX Runtime engine
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,strategy,h,w", [
    ("tiny", "average", 64, 96),
    ("tiny", "detail", 70, 90),      # odd pyramid sizes, padded to the multiple
    ("default", "detail", 64, 64),
    ("tiny", "detail_soft", 70, 90),
    ("tiny", "detail_denoise", 70, 90),
    ("paper", "average", 48, 40),
    ("tiny", "hybrid", 40, 48),
])
def test_ort_matches_torch_within_two_grey_levels(cache, name, strategy, h, w):
    net = lively(name)
    torch_fuser = Fuser(TorchEngine(lively(name)), net.size_multiple, strategy)
    ort_fuser = Fuser(OrtEngine(net, threads=1, strategies=(strategy,)), net.size_multiple, strategy)
    vis, ir = pairs(2, h, w)
    ref, got = torch_fuser.fuse_batch(vis, ir), ort_fuser.fuse_batch(vis, ir)
    assert ref[0].std() > 10, "test network output is flat: the comparison would prove nothing"
    for r, g in zip(ref, got):
        assert r.shape == g.shape == (h, w, 3)
        assert np.abs(r.astype(int) - g.astype(int)).max() <= 2


def test_ort_clear_matches_torch(cache):
    net = lively("tiny")
    vis, _ = pairs(1, 64, 64, colour=False)
    ref = Fuser(TorchEngine(lively("tiny")), 2, "average").clear(vis[0])
    got = Fuser(OrtEngine(net), 2, "average").clear(vis[0])
    assert np.abs(ref.astype(int) - got.astype(int)).max() <= 2


def test_ort_export_is_cached_by_weights(cache, monkeypatch):
    calls = []
    real = onnx_engine.export_onnx
    monkeypatch.setattr(onnx_engine, "export_onnx", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    OrtEngine(lively("tiny"), strategies=("average",))
    OrtEngine(lively("tiny"), strategies=("average",))   # same weights: read from the cache
    assert calls == ["fuse_average"]
    assert len(list(cache.glob("*.onnx"))) == 1
    OrtEngine(lively("tiny", seed=5), strategies=("average",))  # other weights: a new export
    assert calls == ["fuse_average", "fuse_average"]
    assert len(list(cache.glob("*.onnx"))) == 2


def test_ort_channel_nuclear_is_a_clear_error(cache):
    eng = OrtEngine(lively("tiny"), strategies=())
    with pytest.raises(LMFusionError, match="channel_nuclear.*SVD"):
        eng.fuse(np.zeros((1, 1, 32, 32), np.float32), np.zeros((1, 1, 32, 32), np.float32), "channel_nuclear")


def test_ort_detail_refuses_sizes_where_the_graph_would_differ(cache):
    eng = OrtEngine(lively("tiny"), strategies=("detail",))
    small = np.zeros((1, 1, 16, 64), np.float32)
    with pytest.raises(InputError, match=">= 32"):
        eng.fuse(small, small, "detail")
    assert eng.fuse(small, small, "average").shape == (1, 1, 16, 64)  # average has no such limit


def test_ort_through_lmfusion_load(cache, tmp_path):
    save_model(lively("tiny"), tmp_path / "w" / "lmfusion.safetensors")
    f_ort = lmfusion.load(tmp_path / "w", engine="onnxruntime")
    f_torch = lmfusion.load(tmp_path / "w")
    vis, ir = pairs(1, 48, 64)
    assert f_ort.name.endswith("/onnxruntime")
    assert np.abs(f_ort.fuse(vis[0], ir[0]).astype(int) - f_torch.fuse(vis[0], ir[0]).astype(int)).max() <= 2


@pytest.mark.skipif(CUDA_EP in __import__("onnxruntime").get_available_providers(),
                    reason="this onnxruntime has the CUDA EP")
def test_ort_cuda_without_gpu_ep_raises_or_falls_back_when_asked(cache, caplog):
    with pytest.raises(LMFusionError, match="onnxruntime-gpu"):
        OrtEngine(lively("tiny"), device="cuda", precision="fp16")
    with caplog.at_level(logging.WARNING, logger="lmfusion.onnx_engine"):
        eng = OrtEngine(lively("tiny"), device="cuda", precision="fp16", fallback=True)
    assert eng.active_providers == [CPU_EP] and eng.dtype == "fp32"
    assert "fallback=True" in caplog.text


def test_provider_choice():
    assert choose_providers("cpu", "fp32", [CPU_EP]) == ([CPU_EP], "fp32")
    with pytest.raises(LMFusionError, match="fp16.*cuda"):
        choose_providers("cpu", "fp16", [CPU_EP])
    provs, dtype = choose_providers("cuda", "fp16", [TRT_EP, CUDA_EP, CPU_EP])
    assert provs[0][0] == TRT_EP and provs[0][1]["trt_fp16_enable"] and dtype == "fp32"
    provs, dtype = choose_providers("cuda:1", "fp16", [CUDA_EP, CPU_EP])
    assert provs[0] == (CUDA_EP, {"device_id": 1}) and dtype == "fp16"  # fp16 graph for CUDA EP
    with pytest.raises(LMFusionError, match="device 'tpu'"):
        choose_providers("tpu", "fp32", [CPU_EP])


def test_fp16_export_has_half_inputs(tmp_path):
    import onnx
    path = onnx_engine.export_onnx(lively("tiny"), "fuse_average", tmp_path / "h.onnx", dtype="fp16")
    g = onnx.load(str(path)).graph
    assert [i.type.tensor_type.elem_type for i in g.input] == [onnx.TensorProto.FLOAT16] * 2
    dims = [d.dim_param for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]


# --------------------------------------------------------------------------------------------
# CUDA stream pipeline: scheduling logic on simulated streams
# --------------------------------------------------------------------------------------------
class SimStreams:
    """StageOps on a simulated device: each stage is a stream that runs its ops in order; an op
    starts when its stream is free, its input event is done and the host has issued it. Events
    are completion times; the host clock moves only when the scheduler waits."""

    def __init__(self, t_up=1.0, t_comp=1.0, t_down=1.0):
        self.dur = {"up": t_up, "comp": t_comp, "down": t_down}
        self.free = {"up": 0.0, "comp": 0.0, "down": 0.0}
        self.host = 0.0
        self.busy: dict[int, object] = {}
        self.result: dict[int, object] = {}
        self.log: list[tuple[str, int, float, float]] = []

    def _run(self, stream: str, after: float, slot: int) -> float:
        start = max(self.free[stream], after, self.host)
        self.free[stream] = end = start + self.dur[stream]
        self.log.append((stream, slot, start, end))
        return end

    def upload(self, slot, inputs):
        assert slot not in self.busy, f"slot {slot} reused before its result was fetched"
        self.busy[slot] = inputs
        return self._run("up", 0.0, slot)

    def compute(self, slot, after):
        self.result[slot] = ("fused", self.busy[slot])
        return self._run("comp", after, slot)

    def download(self, slot, after):
        return self._run("down", after, slot)

    def fetch(self, slot):
        self.busy.pop(slot)
        return self.result.pop(slot)

    def done(self, ev):
        return ev <= self.host

    def wait(self, ev):
        self.host = max(self.host, ev)


def run_frames(ops, depth, n):
    sched = PipelineScheduler(ops, depth)
    out = []
    for i in range(n):
        sched.submit(f"frame{i}", tag=i)
        out += sched.collect()
    out += sched.collect(block=True)
    return out, ops.host


def test_pipeline_overlaps_upload_compute_download():
    n = 10
    out, t = run_frames(SimStreams(), depth=3, n=n)
    assert t == n + 2          # a 3-stage pipeline: one stage time per frame plus fill
    serial_out, t1 = run_frames(SimStreams(), depth=1, n=n)
    assert t1 == 3 * n         # no overlap with one slot
    assert out == serial_out == [(i, ("fused", f"frame{i}")) for i in range(n)]


def test_pipeline_runs_at_the_slowest_stage_and_keeps_order():
    ops = SimStreams(t_up=0.5, t_comp=2.0, t_down=0.5)
    out, t = run_frames(ops, depth=3, n=8)
    assert t == 0.5 + 8 * 2.0 + 0.5
    assert [tag for tag, _ in out] == list(range(8))
    # while frame k computes, frame k+1 is uploaded: their intervals overlap
    up = {s: (a, b) for st, s, a, b in ops.log if st == "up"}
    comp = [(a, b) for st, _, a, b in ops.log if st == "comp"]
    assert up and comp[0][0] < 1.0 and comp[0][1] > 0.5


def test_pipeline_collect_returns_only_finished_frames_and_bounds_memory():
    ops = SimStreams()
    sched = PipelineScheduler(ops, depth=3)
    for i in range(3):
        sched.submit(i, tag=i)
    assert sched.collect() == [] and sched.pending == 3   # the host has not waited: nothing done
    sched.submit(3, tag=3)                                # all slots busy: waits for frame 0
    assert ops.host == 3.0 and len(ops.busy) == 3
    assert [t for t, _ in sched.collect()] == [0]
    assert [t for t, _ in sched.collect(block=True)] == [1, 2, 3] and sched.pending == 0


# --------------------------------------------------------------------------------------------
# CUDA stream engine: the same code on the CPU (synchronous), and on a GPU when present
# --------------------------------------------------------------------------------------------
def test_stream_engine_on_cpu_equals_torch_engine():
    net = lively("tiny")
    ref = TorchEngine(lively("tiny"))
    eng = CudaStreamEngine(net, device="cpu", precision="fp32", chunk=1)
    rng = np.random.default_rng(0)
    v, i = (rng.random((3, 1, 32, 48), dtype=np.float32) for _ in range(2))
    np.testing.assert_allclose(eng.fuse(v, i, "average"), ref.fuse(v, i, "average"), atol=1e-5)
    np.testing.assert_allclose(eng.clear(v), ref.clear(v), atol=1e-5)
    for k in range(4):  # async API: results keep their tags and order, sizes may change
        eng.submit(v[k % 3:k % 3 + 1], i[k % 3:k % 3 + 1], "detail", tag=k)
    eng.submit(v[:, :, :16, :16], i[:, :, :16, :16], "average", tag="small")
    got = eng.collect(block=True)
    assert [t for t, _ in got] == [0, 1, 2, 3, "small"]
    np.testing.assert_allclose(got[1][1], ref.fuse(v[1:2], i[1:2], "detail"), atol=1e-5)
    assert got[4][1].shape == (3, 1, 16, 16)


def test_stream_engine_errors():
    eng = CudaStreamEngine(lively("tiny"), device="cpu", precision="fp32")
    a = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(LMFusionError, match="strategy 'nope'"):
        eng.submit(a, a, "nope")
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        eng.fuse(a[0], a[0], "average")
    eng.submit(a, a, "average")
    with pytest.raises(LMFusionError, match="pending"):
        eng.fuse(a, a, "average")
    with pytest.raises(LMFusionError, match="fp16.*cuda"):
        CudaStreamEngine(lively("tiny"), device="cpu", precision="fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_torch_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(LMFusionError, match="CUDA is not available"):
        make_engine("torch", lively("tiny"), "cuda", "fp16")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_stream_engine_fp16_matches_cpu_fp32():
    net = lively("default")
    eng = make_engine("torch", lively("default"), "cuda", "fp16")
    assert isinstance(eng, CudaStreamEngine)
    ref = TorchEngine(net)
    # structured images: on uniform noise fp16 rounding flips the detail strategy's max-abs
    # choice at a few pixels (CPU fp16: 99.9th percentile 3.3 levels); on these, max < 1 level
    vis, ir = pairs(2, 128, 160, colour=False)
    v, i = (np.stack(x)[:, None].astype(np.float32) / 255 for x in (vis, ir))
    want = ref.fuse(v, i, "detail")
    for k in range(6):
        eng.submit(v, i, "detail", tag=k)
    got = eng.collect(block=True)
    assert [t for t, _ in got] == list(range(6))
    for _, g in got:
        assert np.abs(g - want).max() * 255 <= 2


# --------------------------------------------------------------------------------------------
# Reduced-resolution engine (the CPU real-time option)
# --------------------------------------------------------------------------------------------
class AverageEngine:
    """A stand-in network: fused = mean of the inputs, clear = identity; records input shapes."""

    name = "avg"

    def __init__(self):
        self.shapes = []

    def fuse(self, v, i, strategy):
        self.shapes.append(v.shape)
        return (v + i) / 2

    def clear(self, y):
        self.shapes.append(y.shape)
        return y.copy()


def test_reduced_res_runs_the_engine_at_half_size_and_keeps_detail():
    from lmfusion.engines import ReducedResEngine
    inner = AverageEngine()
    eng = ReducedResEngine(inner, factor=2, multiple=4)
    rng = np.random.default_rng(0)
    y = rng.random((2, 1, 30, 45), dtype=np.float32)      # odd: padded to 8 internally
    np.testing.assert_allclose(eng.clear(y), y, atol=1e-6)  # identity net: detail restores all
    assert inner.shapes[-1] == (2, 1, 16, 24)
    np.testing.assert_allclose(eng.fuse(y, y, "average"), y, atol=1e-6)
    # the stronger detail of either input survives: an IR edge on a flat VIS
    vis = np.full((1, 1, 32, 32), 0.5, np.float32)
    ir = vis.copy()
    ir[..., 16:] = 0.9
    out = eng.fuse(vis, ir, "average")
    assert out[0, 0, 0, 15] < out[0, 0, 0, 16] - 0.15      # the edge is still a step


def test_reduced_res_through_make_engine_matches_torch_shape_and_range():
    net = lively("tiny")
    eng = make_engine("torch", net, "cpu", "fp32", resolution_scale=2)
    assert eng.name == "torch@1/2"
    v, i = (np.random.default_rng(k).random((1, 1, 50, 70), dtype=np.float32) for k in (1, 2))
    out = eng.fuse(v, i, "average")
    assert out.shape == (1, 1, 50, 70) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(LMFusionError, match="resolution_scale"):
        make_engine("torch", net, "cpu", "fp32", resolution_scale=0)
