"""The public inference API: ``lmfusion.load(...) -> Fuser``.

    fuser = lmfusion.load()                      # weights/lmfusion.safetensors, CPU, fp32
    fused = fuser.fuse(vis_bgr, ir_gray)         # HxWx3 BGR uint8 (gray in -> gray out)
    clean = fuser.clear(vis_bgr, ir_gray)        # the visible image with the smoke removed (ir optional)
    res = fuser.fuse_batch_full([vis], [ir])[0]  # .fused, .t (HxW transmission), .smoke (coverage, mean_t)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from .engines import make_engine
from .errors import ConfigError, InputError, WeightsError
from .networks import NEEDS_T, STRATEGIES, clear_weight
from .smoke_model import dehaze
from .weights import DEFAULT_FILE, load_model

MODEL_FILES = {"default": DEFAULT_FILE, "paper": "lmfusion_paper.safetensors"}


def _check_vis(vis: np.ndarray, name: str = "vis") -> None:
    if not isinstance(vis, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(vis).__name__}")
    if vis.dtype != np.uint8:
        raise InputError(f"{name}: expected dtype uint8, got {vis.dtype}")
    if not (vis.ndim == 2 or (vis.ndim == 3 and vis.shape[2] in (1, 3))):
        raise InputError(f"{name}: expected HxW gray or HxWx3 BGR, got shape {vis.shape}")


def _to_gray(ir: np.ndarray, name: str = "ir") -> np.ndarray:
    _check_vis(ir, name)
    if ir.ndim == 3:
        return ir[..., 0] if ir.shape[2] == 1 else cv2.cvtColor(ir, cv2.COLOR_BGR2GRAY)
    return ir


def _split_y(vis: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (Y uint8 HxW, CrCb uint8 HxWx2 or None for gray)."""
    if vis.ndim == 2 or vis.shape[2] == 1:
        return vis.reshape(vis.shape[:2]), None
    ycc = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)
    return ycc[..., 0], ycc[..., 1:]


def _merge_y(y: np.ndarray, crcb: np.ndarray | None) -> np.ndarray:
    """Y (HxW uint8) and CrCb (HxWx2 uint8, None for gray) -> BGR (or the gray Y)."""
    if crcb is None:
        return y
    return cv2.cvtColor(cv2.merge([y, crcb[..., 0], crcb[..., 1]]), cv2.COLOR_YCrCb2BGR)


def _fade_chroma(crcb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """CrCb (HxWx2 uint8) pulled towards neutral 128 where w (HxW float32 in [0, 1]) is small:
    128 + (c - 128) * w, rounded, per pixel (one OpenCV blend per channel)."""
    gray = np.full(w.shape, 128, np.uint8)
    return cv2.merge([cv2.blendLinear(np.ascontiguousarray(crcb[..., k]), gray, w, 1 - w) for k in (0, 1)])


def smoke_stats(t: np.ndarray) -> dict[str, float]:
    """The per-frame smoke summary detectors get, from t (HxW, 1 = clear air): coverage (fraction
    of pixels with t < 0.5) and mean_t."""
    t = np.asarray(t, dtype=np.float32)
    return {"coverage": np.count_nonzero(t < 0.5) / t.size, "mean_t": float(t.mean())}


@dataclass
class FusionResult:
    """One fused pair: ``fused`` (as ``Fuser.fuse`` returns), the smoke model's transmission
    ``t`` (HxW float32 in [0, 1], 1 = clear air; None without a smoke model) and its summary
    ``smoke`` = {"coverage": fraction of pixels with t < 0.5, "mean_t"} (None likewise)."""
    fused: np.ndarray
    t: np.ndarray | None = None
    smoke: dict | None = None


class Fuser:
    """Fuses registered VIS/IR pairs; see ``fuse``, ``fuse_batch``, ``fuse_batch_full``, ``clear``."""

    def __init__(self, engine, multiple: int, strategy: str, chroma: str = "vis",
                 provenance: dict | None = None, model_name: str = "", min_size: int = 1,
                 smoke=None):
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy {strategy!r}: expected one of: {', '.join(STRATEGIES)}")
        if chroma not in ("vis", "average"):
            raise ConfigError(f"chroma {chroma!r}: expected 'vis' or 'average'")
        self.engine, self.multiple = engine, multiple
        # smallest frame side: the network's own, times the engine's down-scaling (resolution_scale)
        self.min_size = min_size * getattr(engine, "factor", 1)
        self.strategy, self.chroma = strategy, chroma
        self.provenance = provenance or {}
        self.model_name = model_name
        self.smoke = smoke  # SmokeNet (torch, CPU fp32) or None for a latent-mapping model

    @property
    def name(self) -> str:
        return f"lmfusion-{self.model_name}/{self.strategy}/{self.engine.name}"

    # -- helpers ---------------------------------------------------------------------------
    def _pad(self, ys: list[np.ndarray]) -> tuple[np.ndarray, int, int]:
        """list of HxW uint8 (same size) -> (B,1,Hp,Wp) float32 reflect-padded to the multiple."""
        h, w = ys[0].shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        arr = np.stack(ys).astype(np.float32) / 255.0
        if ph or pw:
            arr = np.pad(arr, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        return arr[:, None], h, w

    @staticmethod
    def _to_u8(y: np.ndarray, h: int, w: int) -> np.ndarray:
        return np.clip(y[0, :h, :w] * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def _prepare(self, vis_list: Sequence[np.ndarray], ir_list: Sequence[np.ndarray], split: bool = True):
        """Check the pairs -> (VIS Y list, VIS CrCb list, IR gray list); with ``split`` False the
        VIS lists hold None (the caller replaces VIS, e.g. by the smoke model's J)."""
        if len(vis_list) != len(ir_list):
            raise InputError(f"fuse_batch: {len(vis_list)} vis images but {len(ir_list)} ir images")
        vy, cc, iy = [], [], []
        for i, (vis, ir) in enumerate(zip(vis_list, ir_list)):
            _check_vis(vis)
            irg = _to_gray(ir)
            if vis.shape[:2] != irg.shape[:2]:
                raise InputError(f"vis and ir sizes differ: vis {vis.shape[1]}x{vis.shape[0]}, ir "
                                 f"{irg.shape[1]}x{irg.shape[0]} (register them to one geometry first)")
            if vis.shape[:2] != vis_list[0].shape[:2]:
                raise InputError(f"fuse_batch: image {i} is {vis.shape[1]}x{vis.shape[0]}, image 0 is "
                                 f"{vis_list[0].shape[1]}x{vis_list[0].shape[0]} (one size per batch)")
            if min(vis.shape[:2]) < self.min_size:
                raise InputError(f"image {i} is {vis.shape[1]}x{vis.shape[0]}: this model needs at least "
                                 f"{self.min_size}x{self.min_size} px")
            y, c = _split_y(vis) if split else (None, None)
            vy.append(y), cc.append(c), iy.append(irg)
        return vy, cc, iy

    # -- public ----------------------------------------------------------------------------
    def fuse(self, vis: np.ndarray, ir: np.ndarray, strategy: str | None = None) -> np.ndarray:
        """vis HxWx3 BGR or HxW gray uint8, ir HxW (or HxWx3 gray) uint8, same H, W.

        Returns the fused image: HxWx3 BGR uint8 when vis is colour (chroma from VIS, or the
        average of VIS chroma and neutral IR chroma with chroma='average'), HxW uint8 otherwise.
        """
        return self.fuse_batch([vis], [ir], strategy)[0]

    def fuse_batch(self, vis_list: Sequence[np.ndarray], ir_list: Sequence[np.ndarray],
                   strategy: str | None = None) -> list[np.ndarray]:
        """Fuse B pairs of one size in one engine call (VIS and IR share one encoder batch)."""
        return [r.fused for r in self.fuse_batch_full(vis_list, ir_list, strategy)]

    @torch.inference_mode()
    def _estimate(self, vis_list, ir_list) -> tuple[np.ndarray, list[np.ndarray]]:
        """The smoke model on B images of one size -> (t (B,1,H,W) float32, dehazed VIS list)."""
        colour = [v.ndim == 3 and v.shape[2] == 3 for v in vis_list]
        rgb = torch.from_numpy(np.stack([cv2.cvtColor(v, cv2.COLOR_BGR2RGB) if c else v.reshape(*v.shape[:2], 1)
                                         for v, c in zip(vis_list, colour)]))
        # (B, 3|1, H, W) RGB; gray stays 1 channel. Contiguous (a uint8 copy): on a channels-last
        # view, dehazing against the (B,1,H,W) t takes 0.63 instead of 0.10 CPU-ms at 320x256
        rgb = rgb.permute(0, 3, 1, 2).contiguous().float().div_(255)
        ir = None
        if ir_list is not None:
            ir = torch.from_numpy(np.stack(ir_list))[:, None].float().div_(255)
        t, a = self.smoke(rgb, ir)
        j = dehaze(rgb, t, a, self.smoke.cfg.t0)
        j = (j.permute(0, 2, 3, 1) * 255 + 0.5).clamp_(0, 255).to(torch.uint8).numpy()
        jl = [cv2.cvtColor(j[b], cv2.COLOR_RGB2BGR) if colour[b] else (j[b] if vis_list[b].ndim == 3 else j[b, ..., 0])
              for b in range(len(vis_list))]
        return t.numpy(), jl

    def fuse_batch_full(self, vis_list: Sequence[np.ndarray], ir_list: Sequence[np.ndarray],
                        strategy: str | None = None) -> list[FusionResult]:
        """``fuse_batch`` that also returns the smoke model's transmission and summary per pair.

        With a smoke model: VIS is dehazed (J = (I - A) / max(t, t0) + A, in colour), J and IR
        are fused (a NEEDS_T strategy weighs them by t), and the chroma is J's, faded towards
        gray where the smoke left nothing to recover.
        """
        strategy = strategy or self.strategy
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy {strategy!r}: expected one of: {', '.join(STRATEGIES)}")
        vy, cc, iy = self._prepare(vis_list, ir_list, split=self.smoke is None)
        t = None
        if self.smoke is not None:
            t, jl = self._estimate(vis_list, iy)
            vy, cc = zip(*(_split_y(j) for j in jl))
        va, h, w = self._pad(vy)
        ia, _, _ = self._pad(iy)
        tp = None
        if t is not None and strategy in NEEDS_T:
            tp = np.pad(t, ((0, 0), (0, 0), (0, va.shape[2] - h), (0, va.shape[3] - w)), mode="edge")
        out = self.engine.fuse(va, ia, strategy, t=tp) if tp is not None else self.engine.fuse(va, ia, strategy)
        res = []
        for b, c in enumerate(cc):
            if c is not None and self.chroma == "average":
                c = ((c.astype(np.uint16) + 128) // 2).astype(np.uint8)
            elif c is not None and t is not None:
                c = _fade_chroma(c, clear_weight(torch.from_numpy(t[b, 0])).numpy())
            tb = None if t is None else t[b, 0]
            res.append(FusionResult(_merge_y(self._to_u8(out[b], h, w), c), tb,
                                    None if tb is None else smoke_stats(tb)))
        return res

    def smoke_map(self, vis: np.ndarray, ir: np.ndarray | None = None) -> np.ndarray:
        """The transmission t of the smoke over ``vis`` (HxW float32, 1 = clear air)."""
        if self.smoke is None:
            raise ConfigError(f"model {self.model_name!r} has no smoke model (mapping 'latent')")
        vy, _, iy = self._prepare([vis], [ir if ir is not None else _gray_of(vis)])
        return self._estimate([vis], None if ir is None else iy)[0][0, 0]

    def clear(self, vis: np.ndarray, ir: np.ndarray | None = None) -> np.ndarray:
        """The visible image with the smoke removed, in colour; ``ir`` (optional) helps the
        smoke model find the smoke. Latent-mapping models: decoder(LMF(encoder(Y))), chroma back."""
        return self.clear_batch([vis], None if ir is None else [ir])[0]

    def clear_batch(self, vis_list: Sequence[np.ndarray],
                    ir_list: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        vy, cc, iy = self._prepare(vis_list, ir_list if ir_list is not None else [_gray_of(v) for v in vis_list])
        if self.smoke is not None:
            return self._estimate(vis_list, None if ir_list is None else iy)[1]
        va, h, w = self._pad(vy)
        out = self.engine.clear(va)
        return [_merge_y(self._to_u8(out[b], h, w), c) for b, c in enumerate(cc)]


def _gray_of(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img[..., 0]


def load(weights_dir: str | Path = "weights", device: str = "cpu", precision: str = "fp32",
         engine: str = "torch", strategy: str | None = None, chroma: str = "vis",
         model: str = "default", engine_options: dict | None = None) -> Fuser:
    """Load shipped or trained weights and return a Fuser.

    ``weights_dir`` is a folder holding ``lmfusion.safetensors`` (``model="default"``) or
    ``lmfusion_paper.safetensors`` (``model="paper"``), or a path to a .safetensors file.
    ``engine_options`` go to the engine (e.g. ``{"fallback": True, "threads": 1}`` for
    onnxruntime, ``{"resolution_scale": 2}`` for the CPU real-time option; docs/inference.md).
    Raises WeightsError (missing file, other format version or architecture), LMFusionError
    (CUDA asked for but absent), ConfigError (unknown strategy).
    """
    p = Path(weights_dir)
    if p.suffix != ".safetensors":
        if model not in MODEL_FILES:
            raise ConfigError(f"model {model!r}: expected one of: {', '.join(MODEL_FILES)}")
        p = p / MODEL_FILES[model]
    if not p.exists():
        raise WeightsError(f"{p}: weights file not found (expected the shipped weights/ folder or "
                           f"a file written by 'python -m lmfusion train')")
    net, prov = load_model(p)
    smoke = None
    if net.cfg.mapping == "smoke":  # a copy: the engine may move or cast ``net``
        from .smoke_model import SmokeNet
        smoke = SmokeNet(net.cfg.smoke)
        smoke.load_state_dict(net.smoke.state_dict())
        smoke.eval()
    eng = make_engine(engine, net, device, precision, **(engine_options or {}))
    return Fuser(eng, net.size_multiple, strategy or net.cfg.strategy, chroma, prov, net.cfg.name,
                 net.min_size, smoke)
