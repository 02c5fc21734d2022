"""ONNX Runtime engine: the network exported to ONNX (dynamic batch, height and width) and run by
an ONNX Runtime execution provider (EP).

    fuser = lmfusion.load(engine="onnxruntime")                  # CPU EP, fp32
    eng = OrtEngine(net, device="cuda", precision="fp16")        # TensorRT EP (fp16) or CUDA EP

Why: on a CPU, ONNX Runtime runs this conv net about twice as fast as torch eager (fused
conv+ReLU, no Python per layer); on a GPU its TensorRT EP compiles fp16 kernels.

Graphs. The fusion strategy is baked into each exported graph (ONNX has no Python dispatch), so
there is one graph per strategy, exported on first use: ``fuse_<strategy>`` with inputs
``vis_y``, ``ir_y`` (B, 1, H, W) and output ``fused_y`` (B, 1, H, W); and ``clear`` with input
``y`` and output ``clear_y``. ``channel_nuclear`` needs an SVD, for which ONNX has no operator:
asking for it raises LMFusionError. Exported files are cached in ``cache_dir`` (default
``$LMFUSION_CACHE`` or ``~/.cache/lmfusion/onnx``) under a name keyed by a hash of the weights and
config, the graph, the dtype and the opset, so a second start does not re-export.

Providers. device="cpu" -> CPUExecutionProvider. device="cuda" needs onnxruntime-gpu (the optional
extra ``pip install smokefusion[gpu]``): precision="fp16" prefers the TensorRT EP (fp16 kernels
from the fp32 graph), then the CUDA EP on an fp16 graph; precision="fp32" uses the CUDA EP. A
missing EP raises LMFusionError naming what is missing, unless ``fallback=True``, which logs one
warning and runs on the CPU EP in fp32.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import FORMAT_VERSION
from .errors import InputError, LMFusionError
from .networks import LMFusionNet, NEEDS_T, STRATEGIES

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_VERSION = 2  # 2: fusion rule in float32 inside fp16 graphs. Bump when the export wrapper changes what a cached .onnx file contains
EXPORT_SIDE = 64    # H = W of the tracing input; a multiple of every LMF scale (1, 2, 4, 8)
# Strategies whose torch code branches on the input size: the exported graph keeps the branch
# taken at EXPORT_SIDE, which is the torch branch only for sides >= this many pixels.
MIN_SIDE = {"detail": 32, "detail_soft": 32, "detail_denoise": 16, "transmission": 32}  # 4 (denoise: 3) pyramid levels; the torch code stops below 4 px
NO_ONNX = {"channel_nuclear": "needs an SVD (nuclear norm), for which ONNX has no operator"}

CPU_EP, CUDA_EP, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def default_cache_dir() -> Path:
    return Path(os.environ.get("LMFUSION_CACHE", Path.home() / ".cache" / "lmfusion")) / "onnx"


def model_key(model: LMFusionNet) -> str:
    """Short hash of the config and every tensor: equal weights file -> equal key."""
    h = hashlib.sha256(model.cfg.to_json().encode())
    h.update(f"format{FORMAT_VERSION}-export{EXPORT_VERSION}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _FuseGraph(torch.nn.Module):
    """The network with one strategy fixed: (vis_y, ir_y) -> fused_y."""

    def __init__(self, net: LMFusionNet, strategy: str):
        super().__init__()
        self.net, self.strategy = net, strategy

    def forward(self, vis_y: torch.Tensor, ir_y: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(vis_y, ir_y, strategy=self.strategy, t=t)


class _ClearGraph(torch.nn.Module):
    def __init__(self, net: LMFusionNet):
        super().__init__()
        self.net = net

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net.clear(y)


def export_onnx(model: LMFusionNet, graph: str, path: Path, dtype: str = "fp32",
                opset: int = OPSET) -> Path:
    """Export ``graph`` ("fuse_<strategy>" or "clear") of ``model`` to ``path`` (atomic write).

    Dynamic axes: batch, height, width. dtype "fp16" exports a half-precision graph (inputs and
    outputs float16), for the CUDA EP. Raises LMFusionError for a strategy ONNX cannot express.
    """
    if graph == "clear":
        module, names_in, names_out = _ClearGraph(model), ["y"], ["clear_y"]
    elif graph.startswith("fuse_") and graph[5:] in STRATEGIES:
        strategy = graph[5:]
        if strategy in NO_ONNX:
            raise LMFusionError(f"strategy {strategy!r} cannot run in ONNX Runtime: it {NO_ONNX[strategy]}; "
                                f"use engine='torch' or another strategy")
        module, names_in, names_out = _FuseGraph(model, strategy), ["vis_y", "ir_y"], ["fused_y"]
        if strategy in NEEDS_T:
            names_in.append("t")
    else:
        raise LMFusionError(f"graph {graph!r}: expected 'clear' or 'fuse_<strategy>' with a strategy "
                            f"from: {', '.join(STRATEGIES)}")
    tdtype = torch.float16 if dtype == "fp16" else torch.float32
    # Export a copy: the caller's model keeps its device and dtype.
    net = LMFusionNet(model.cfg)
    net.load_state_dict(model.state_dict())
    module.net = net.to(torch.device("cpu"), tdtype).eval()
    args = tuple(torch.rand(1, 1, EXPORT_SIDE, EXPORT_SIDE, dtype=tdtype) for _ in names_in)
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in names_in + names_out}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with warnings.catch_warnings():  # tracer warnings about shape-dependent Python branches
        warnings.simplefilter("ignore")  # are handled by MIN_SIDE, not by the user
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), input_names=names_in, output_names=names_out,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise LMFusionError("engine 'onnxruntime' needs the onnxruntime package "
                            "(pip install onnxruntime, or smokefusion[gpu] for CUDA/TensorRT)") from None
    return onnxruntime


def choose_providers(device: str, precision: str, available: list[str],
                     fallback: bool = False) -> tuple[list, str]:
    """-> (providers list for InferenceSession, graph dtype "fp32"|"fp16").

    Raises LMFusionError naming the missing EP unless ``fallback`` (then CPU, fp32, one warning).
    """
    if precision not in ("fp32", "fp16"):
        raise LMFusionError(f"precision {precision!r}: expected 'fp32' or 'fp16'")
    if device == "cpu":
        if precision == "fp16":
            raise LMFusionError("precision 'fp16' needs device='cuda' (the CPU EP runs fp32)")
        return [CPU_EP], "fp32"
    if not device.startswith("cuda"):
        raise LMFusionError(f"device {device!r}: expected 'cpu' or 'cuda' (or 'cuda:N')")
    dev_id = int(device.split(":")[1]) if ":" in device else 0
    if precision == "fp16" and TRT_EP in available:
        trt = {"device_id": dev_id, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(default_cache_dir() / "trt")}
        return [(TRT_EP, trt), (CUDA_EP, {"device_id": dev_id}), CPU_EP], "fp32"
    if CUDA_EP in available:
        return [(CUDA_EP, {"device_id": dev_id}), CPU_EP], precision
    msg = (f"device {device!r} with engine 'onnxruntime': no CUDA execution provider (available: "
           f"{', '.join(available) or 'none'}); install onnxruntime-gpu (pip install smokefusion[gpu]) "
           f"on a machine with an NVIDIA GPU, or use device='cpu'")
    if not fallback:
        raise LMFusionError(msg)
    log.warning("%s; falling back to the CPU EP in fp32 because fallback=True", msg)
    return [CPU_EP], "fp32"


class OrtEngine:
    """ONNX Runtime engine with the TorchEngine interface: ``fuse`` and ``clear`` on numpy
    float32 (B, 1, H, W) arrays in [0, 1], H and W multiples of the model's ``size_multiple``.

    Args:
        model: the network (weights are read from it and hashed for the cache key).
        device: "cpu" or "cuda"/"cuda:N".  precision: "fp32" or "fp16" (fp16 needs cuda).
        fallback: when the GPU EP is missing, run on the CPU EP (with a warning) instead of raising.
        threads: ONNX Runtime intra-op threads (0 = its default, one per core).
        cache_dir: where exported .onnx files are kept (default ``default_cache_dir()``).
        strategies: graphs to build now (the model's default strategy when None); others are
            built on first use.
    """

    name = "onnxruntime"

    def __init__(self, model: LMFusionNet, device: str = "cpu", precision: str = "fp32",
                 fallback: bool = False, threads: int = 0, cache_dir: str | Path | None = None,
                 strategies: tuple[str, ...] | None = None):
        ort = _ort()
        self.model = model.cpu().float().eval()
        self.providers, self.dtype = choose_providers(device, precision, ort.get_available_providers(), fallback)
        self.device = device if self.providers[0] != CPU_EP else "cpu"
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.key = model_key(self.model)
        self.sessions: dict[str, object] = {}
        for s in strategies if strategies is not None else (model.cfg.strategy,):
            self._session(f"fuse_{s}")

    @property
    def active_providers(self) -> list[str]:
        """The EPs the sessions really use (ORT can drop one that fails to load)."""
        s = next(iter(self.sessions.values()), None)
        return list(s.get_providers()) if s is not None else []

    def onnx_path(self, graph: str) -> Path:
        return self.cache_dir / f"{self.model.cfg.name}-{self.key}-{graph}-{self.dtype}-op{OPSET}.onnx"

    def _session(self, graph: str):
        if graph in self.sessions:
            return self.sessions[graph]
        ort = _ort()
        path = self.onnx_path(graph)
        if not path.exists():
            export_onnx(self.model, graph, path, self.dtype)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.log_severity_level = 3  # ORT's own warnings (e.g. unused initialisers) are not ours
        sess = ort.InferenceSession(str(path), so, providers=self.providers)
        wanted = self.providers[0][0] if isinstance(self.providers[0], tuple) else self.providers[0]
        if wanted != CPU_EP and wanted not in sess.get_providers():
            raise LMFusionError(f"onnxruntime could not start {wanted} (it runs {sess.get_providers()}); "
                                f"check the CUDA/cuDNN/TensorRT libraries onnxruntime-gpu needs")
        self.sessions[graph] = sess
        return sess

    def _check(self, a: np.ndarray, name: str, strategy: str | None) -> np.ndarray:
        if a.ndim != 4 or a.shape[1] != 1:
            raise InputError(f"{name}: expected (B, 1, H, W), got shape {a.shape}")
        m = self.model.size_multiple
        if a.shape[2] % m or a.shape[3] % m:
            raise InputError(f"{name}: H and W must be multiples of {m}, got {a.shape[2]}x{a.shape[3]}")
        need = MIN_SIDE.get(strategy or "", 0)
        if min(a.shape[2:]) < need:
            raise InputError(f"{name}: strategy {strategy!r} in ONNX Runtime needs H and W >= {need}, "
                             f"got {a.shape[2]}x{a.shape[3]} (use engine='torch' for smaller images)")
        return np.ascontiguousarray(a, dtype=np.float16 if self.dtype == "fp16" else np.float32)

    def fuse(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str, t: np.ndarray | None = None) -> np.ndarray:
        """(B, 1, H, W) float32 x 2 (x 3 with the transmission t) -> fused (B, 1, H, W) float32."""
        if strategy not in STRATEGIES:
            raise LMFusionError(f"strategy {strategy!r}: expected one of: {', '.join(STRATEGIES)}")
        if vis_y.shape != ir_y.shape:
            raise InputError(f"vis_y {vis_y.shape} and ir_y {ir_y.shape}: expected equal shapes")
        sess = self._session(f"fuse_{strategy}")
        feeds = {"vis_y": self._check(vis_y, "vis_y", strategy), "ir_y": self._check(ir_y, "ir_y", strategy)}
        if strategy in NEEDS_T:
            feeds["t"] = self._check(np.ones_like(vis_y) if t is None else t, "t", strategy)
        out = sess.run(None, feeds)[0]
        return out.astype(np.float32, copy=False)

    def clear(self, y: np.ndarray) -> np.ndarray:
        """(B, 1, H, W) float32 -> decoder(LMF(encoder(y))) (B, 1, H, W) float32."""
        out = self._session("clear").run(None, {"y": self._check(y, "y", None)})[0]
        return out.astype(np.float32, copy=False)


__all__ = ["OrtEngine", "export_onnx", "choose_providers", "model_key", "default_cache_dir", "OPSET"]
