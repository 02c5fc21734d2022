"""Fixtures for stage tests. The RTSP server fixture lives in tests/rtsp_fixture.py so other
test directories can reuse it the same way."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))   # tests/, for rtsp_fixture (last: never shadows a package)

from rtsp_fixture import rtsp_server  # noqa: E402,F401  (registers the fixture)
