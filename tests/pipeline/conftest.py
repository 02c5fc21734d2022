"""Runtime tests: helper stages (slow_stage, recording_probe) import by name, in worker processes too."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
