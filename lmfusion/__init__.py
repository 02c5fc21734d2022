"""LMFusion: learned VIS/IR fusion whose latent feature mapping stage removes smoke.

    import lmfusion
    fuser = lmfusion.load()                 # weights/, CPU fp32, torch engine
    fused = fuser.fuse(vis_bgr, ir_gray)
    clean = fuser.clear(vis_bgr)

Pure PyTorch/numpy/OpenCV: never imports the streaming pipeline. torch is imported lazily, on
first use of an attribute that needs it, so ``lmfusion.baselines`` and ``lmfusion.metrics``
load in milliseconds (a classical-fuser stage does not pay seconds for torch).
"""
from .errors import ConfigError, InputError, LMFusionError, WeightsError

_LAZY = {
    "load": ".api", "Fuser": ".api",
    "ModelConfig": ".config", "PRESETS": ".config", "preset": ".config", "FORMAT_VERSION": ".config",
}

__all__ = ["load", "Fuser", "ModelConfig", "PRESETS", "preset", "FORMAT_VERSION",
           "LMFusionError", "InputError", "WeightsError", "ConfigError"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lmfusion' has no attribute {name!r}")
