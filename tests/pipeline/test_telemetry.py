"""Status line and exit summary: what an operator reads while the pipeline runs."""
from pipeline.telemetry import NodeStats, NodeView, percentiles, status_line, summary_table


def view(name, **msg):
    v = NodeView(name)
    v.update({"node": name, "type": "stats", **msg})
    v.refresh_fps()
    return v


def test_status_line_has_fps_latency_drops_and_queue_depth():
    views = {"capture_ir": view("capture_ir", out=50, fps=10.0, drops_stage=2),
             "fusion": view("fusion", out=48, fps=9.5, lat_ms=[30.0] * 98 + [80.0, 90.0], drops_in=3, depth=1)}
    line = status_line(12.3, views, "fusion")
    assert line.startswith("[  12.3s] capture_ir 10.0fps | fusion  9.5fps")
    assert "lat p50 30ms p99 80ms" in line and "drops 5" in line and "queued 1" in line


def test_summary_table_lists_every_stage_with_its_notes():
    views = {"registration": view("registration", **{"in": 30, "out": 10, "first_out": 1.0, "last_out": 2.0,
                                                      "stage": {"pairs": 10, "unmatched_vis": 10}}),
             "fusion": view("fusion", **{"in": 10, "out": 10, "lat_ms": [20.0, 40.0], "stage": {"fuser": "average"}})}
    table = summary_table(views, "fusion", 3.0)
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "in", "out", "fps", "drops", "corrupt", "notes"]
    assert lines[1].split()[:4] == ["registration", "30", "10", "9.0"] and "unmatched_vis=10" in lines[1]
    assert "fuser=average" in lines[2]
    assert lines[-1].startswith("latency capture->fusion output: p50 30ms p99 40ms over 2 frames")


def test_node_stats_skip_latency_of_media_clock_frames():
    s = NodeStats("fusion")
    s.count_out(0.0, clock="media")
    assert s.message({})["lat_ms"] == [] and s.packets_out == 1
    assert percentiles([]) == (None, None)


def test_node_view_keeps_the_newest_latency_samples_as_8_byte_doubles(monkeypatch):
    import pipeline.telemetry as T
    monkeypatch.setattr(T, "LATENCY_KEEP", 5)
    v = NodeView("fusion")
    for k in range(3):
        v.update({"lat_ms": [10.0 * k + i for i in range(3)]})
    assert list(v.latencies) == [11.0, 12.0, 20.0, 21.0, 22.0]      # the oldest dropped first
    assert v.latencies.itemsize == 8                                  # not a list of Python floats
    assert percentiles(v.latencies) == (20.0, 21.96)
