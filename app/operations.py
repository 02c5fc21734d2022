"""What the ops server (pipeline/ops.py) is told about a run: its sources and calibrations."""
from __future__ import annotations

import datetime as dt
import logging

from calibration.geometry import load
from pipeline.config import mask_url
from pipeline.graph import GraphConfig

log = logging.getLogger("app.operations")


def source_urls(gc: GraphConfig) -> dict[str, str]:
    """Source node -> its URL, password masked (the /health page names each camera)."""
    return {n.name: mask_url(str(n.section.get("url", ""))) for n in gc.nodes if n.role == "source"}


def calibration_dates(gc: GraphConfig) -> dict[str, tuple[str, float]]:
    """stream -> (id, date as epoch seconds at 00:00 UTC) of each camera pair's calibration file;
    pairs whose file is missing or unreadable are left out (their age counts from first sight)."""
    out = {}
    for stream, members in gc.pairs().items():
        path = getattr(members["registration"].config, "calibration", "")
        if not path:
            continue
        try:
            cal = load(path)
            day = dt.datetime.fromisoformat(str(cal.date)).replace(tzinfo=dt.timezone.utc)
        except Exception as e:     # telemetry only warns
            log.warning("ops: calibration age unknown for %s (%s)", path, str(e).splitlines()[0] if str(e) else e)
            continue
        out[stream] = (cal.id, day.timestamp())
    return out
