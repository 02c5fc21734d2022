"""Shared fixtures for runtime tests."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for p in (REPO, HERE):          # HERE: helper modules imported by name (slow_stage, recording_probe...)
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from calibration_files import write_calibration  # noqa: E402


@pytest.fixture
def calibration_file(tmp_path) -> Path:
    return write_calibration(tmp_path / "calibration.yaml")
