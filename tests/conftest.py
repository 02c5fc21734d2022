"""Fixtures every test directory shares. pytest puts this directory (tests/) on sys.path, so
test helpers (calibration_files, rtsp_fixture) import by name."""
from pathlib import Path

import pytest

from calibration_files import write_calibration
from rtsp_fixture import rtsp_server  # noqa: F401  (registers the fixture)


@pytest.fixture
def calibration_file(tmp_path) -> Path:
    return write_calibration(tmp_path / "calibration.yaml")
