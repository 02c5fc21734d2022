"""LMFusion: learned VIS/IR fusion whose latent feature mapping stage removes smoke.

    import lmfusion
    fuser = lmfusion.load()                 # weights/, CPU fp32, torch engine
    fused = fuser.fuse(vis_bgr, ir_gray)
    clean = fuser.clear(vis_bgr)

Pure PyTorch/numpy/OpenCV: never imports the streaming pipeline.
"""
from .api import Fuser, load
from .config import FORMAT_VERSION, PRESETS, ModelConfig, preset
from .errors import ConfigError, InputError, LMFusionError, WeightsError

__all__ = ["load", "Fuser", "ModelConfig", "PRESETS", "preset", "FORMAT_VERSION",
           "LMFusionError", "InputError", "WeightsError", "ConfigError"]
