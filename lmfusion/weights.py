"""Weights on disk: safetensors (cannot execute code) with the config and provenance as metadata.

Metadata keys (all strings, as safetensors requires):
    format: "lmfusion"   format_version: str(FORMAT_VERSION)   config: ModelConfig JSON
    provenance: JSON (training commit, data, steps, wall time, hardware, metrics)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import FORMAT_VERSION, READABLE_VERSIONS, ModelConfig
from .errors import ConfigError, WeightsError
from .networks import LMFusionNet

DEFAULT_FILE = "lmfusion.safetensors"


def save_model(model: LMFusionNet, path: Path, provenance: dict[str, Any] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "lmfusion", "format_version": str(FORMAT_VERSION),
            "config": model.cfg.to_json(), "provenance": json.dumps(provenance or {}, sort_keys=True)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a crash never leaves a half-written weights file


def read_metadata(path: Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (expected a .safetensors file from "
                           f"'python -m lmfusion train' or the shipped weights/)")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def load_model(path: Path, expect: ModelConfig | None = None) -> tuple[LMFusionNet, dict[str, Any]]:
    """Build the network from the file's own config and load its tensors.

    Raises WeightsError for a missing file, another format or format version, or tensors that
    do not fit the architecture in the file (or ``expect``, when given).
    """
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != "lmfusion":
        raise WeightsError(f"{path}: not an lmfusion weights file (metadata format="
                           f"{meta.get('format')!r}, expected 'lmfusion')")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise WeightsError(f"{path}: weights format version {meta.get('format_version')!r}, "
                           f"this lmfusion reads versions {', '.join(READABLE_VERSIONS)}")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]), where=f"{path}:config")
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as e:
        raise WeightsError(f"{path}: model config in the metadata is unusable ({e})") from None
    if expect is not None and cfg.to_dict() != expect.to_dict():
        raise WeightsError(f"{path}: weights are for architecture {cfg.name!r} "
                           f"({cfg.to_json()}), expected {expect.to_json()}")
    model = LMFusionNet(cfg)
    state = load_file(str(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise WeightsError(f"{path}: tensors do not match architecture {cfg.name!r} "
                           f"(missing {len(missing)}, unexpected {len(unexpected)}, wrong shape "
                           f"{len(bad)}; e.g. {(missing + unexpected + bad)[:2]})")
    model.load_state_dict(state)
    model.eval()
    return model, json.loads(meta.get("provenance", "{}"))


def load_state_into(model: torch.nn.Module, path: Path, prefix: str) -> None:
    """Load only the tensors under ``prefix`` (e.g. 'encoder.') from a weights file."""
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    if not state:
        raise WeightsError(f"{path}: holds no tensors under {prefix!r}")
    model.load_state_dict(state)
