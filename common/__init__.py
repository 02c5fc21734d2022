"""Code every package may use and none depends on: the config schema, the synthetic scene.

It imports nothing of this project, so pipeline/, stages/, lmfusion/ and calibration/ can all
use it without an import running the wrong way (tests/test_import_direction.py).
"""
