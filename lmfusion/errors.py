"""Errors raised by lmfusion. Every message is one line naming the thing and what was expected."""


class LMFusionError(Exception):
    """Base class of every error lmfusion raises on purpose."""


class InputError(LMFusionError, ValueError):
    """An image of the wrong shape, dtype or channel count was passed to a Fuser."""


class WeightsError(LMFusionError):
    """Weights are missing, of another format version, or of another architecture."""


class ConfigError(LMFusionError, ValueError):
    """A model or training config has an unknown key or a bad value."""
