#!/usr/bin/env python3
"""Run the live VIS+IR fusion pipeline.

    python run_stream.py                                   # synthetic smoky demo, 20 s, recording under out/demo/
    python run_stream.py --duration 60 --output out/run1   # longer, elsewhere
    python run_stream.py --vis rtsp://user:pass@cam-vis/stream --ir rtsp://user:pass@cam-ir/stream \\
        --calibration configs/calibration/site.yaml --duration 25 --output out/rtsp
    python run_stream.py --config configs/files.yaml --vis vis.mp4 --ir ir.mp4 --max-frames 300
    python run_stream.py --config configs/rtsp.yaml --only capture_vis,capture_ir    # one host of a split graph
    python run_stream.py --duration 0 --http 127.0.0.1:8080   # + /metrics, /health, live view at http://127.0.0.1:8080/

Ctrl-C (or SIGTERM) stops cleanly: end-of-stream flows through every stage, the recording is
finalised, the summary is printed, and the exit status is 0. A failed stage ends the run with
status 1 and a one-line reason. Bad options or config: status 2. See docs/streaming.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from app.operations import calibration_dates, source_urls  # noqa: E402
from app.registry import NODES, check  # noqa: E402
from pipeline.config import ConfigError, load_yaml, mask_secrets, override, to_json  # noqa: E402
from pipeline.graph import build_specs, check_security, describe_edges, effective_config, select_nodes  # noqa: E402
from pipeline.runner import RestartBudget, Runner  # noqa: E402
from stages.capture import source_class  # noqa: E402
from pipeline.transport import EndpointError  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
log = logging.getLogger("run_stream")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML (default: configs/demo.yaml)")
    p.add_argument("--vis", metavar="URL", help="VIS source: rtsp://..., a video file, or an image folder/glob")
    p.add_argument("--ir", metavar="URL", help="IR source: rtsp://..., a video file, or an image folder/glob")
    p.add_argument("--calibration", metavar="YAML", help="ir_from_vis calibration file (registration.calibration)")
    p.add_argument("--output", metavar="DIR", help="recording directory (recorder.out_dir; image dumps go to DIR/dump)")
    p.add_argument("--duration", metavar="S", type=float, help="stop after S seconds of streaming (0 = no limit)")
    p.add_argument("--max-frames", metavar="N", type=int, help="stop after N fused frames (0 = no limit)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="fusion device (fusion.device; auto = CUDA if torch sees a GPU, else CPU)")
    p.add_argument("--fuser", choices=("lmfusion", "laplacian", "average"), help="fusion.fuser")
    p.add_argument("--only", metavar="STAGE[,STAGE]",
                   help=f"run only these stages ({', '.join(NODES)}); endpoints then come from the config")
    p.add_argument("--mode", choices=("process", "thread"), help="pipeline.mode")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override any config key; VALUE is YAML (e.g. --set registration.tolerance_ms=20)")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve /metrics, /health and the live view at / (http.listen; docs/operations.md)")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("--summary-json", metavar="PATH", help="also write the exit summary (per-stage counters) as JSON")
    return p.parse_args(argv)


def apply_args(raw: dict, args: argparse.Namespace) -> dict:
    """The config mapping with the command-line options written into it (before validation)."""
    import yaml
    data = dict(raw)

    def put(dotted: str, value) -> None:
        override(data, dotted, value)

    for node, url in (("capture_vis", args.vis), ("capture_ir", args.ir)):
        if url:
            old = data.get(node) or {}
            if source_class(str(old.get("url", ""))) is not source_class(url):
                data[node] = {}   # options of another source kind (the demo's seed, smoke) do not apply
            put(f"{node}.url", url)
    if args.calibration:
        put("registration.calibration", args.calibration)
    if args.output:
        put("recorder.out_dir", args.output)
        put("image_dump.out_dir", str(Path(args.output) / "dump"))
    if args.duration is not None:
        put("pipeline.duration_s", args.duration)
    if args.max_frames is not None:
        put("pipeline.max_frames", args.max_frames)
    if args.device:
        put("fusion.device", args.device)
    if args.fuser:
        put("fusion.fuser", args.fuser)
    if args.mode:
        put("pipeline.mode", args.mode)
    if args.http:
        put("http.listen", args.http)
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        put(key, yaml.safe_load(value))
    # Inputs named relative to the repository (the shipped configs' calibration and weights)
    # work from any directory; outputs stay relative to where the user runs the command.
    def from_repo(value):
        if isinstance(value, str) and value and not Path(value).is_absolute() \
                and not Path(value).exists() and (REPO / value).exists():
            return str(REPO / value)
        return value

    for section, key in (("registration", "calibration"), ("fusion", "weights_dir")):
        if isinstance(data.get(section), dict) and key in data[section]:
            put(f"{section}.{key}", from_repo(data[section][key]))
    if isinstance(data.get("pairs"), list):
        pairs = data["pairs"] = [dict(p) if isinstance(p, dict) else p for p in data["pairs"]]
        for p in pairs:
            if isinstance(p, dict) and isinstance(p.get("registration"), dict) and "calibration" in p["registration"]:
                p["registration"] = {**p["registration"], "calibration": from_repo(p["registration"]["calibration"])}
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        gc = check(apply_args(load_yaml(args.config), args), args.config)
        pc = gc.pipeline
        logging.getLogger().setLevel(pc.log_level.upper())
        specs = build_specs(gc, pc.mode)
        if args.only:
            specs = select_nodes(specs, args.only, gc)
        check_security(specs, gc)
    except (ConfigError, EndpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.info("effective config (%s): %s", args.config, to_json(mask_secrets(effective_config(gc))))
    for line in describe_edges(specs):
        log.info("edge %s", line)
    if gc.detector_feed.enabled and any(s.name == gc.final().name for s in specs):
        log.info("detector feed: %s (docs/streaming.md)", gc.detector_feed.endpoint)
    rs = pc.restart
    runner = Runner(specs, mode=pc.mode, duration_s=pc.duration_s, status_interval_s=pc.status_interval_s,
                    startup_timeout_s=pc.startup_timeout_s, shutdown_timeout_s=pc.shutdown_timeout_s,
                    stream=pc.stream, log_level=pc.log_level, status_out=None if args.quiet else sys.stderr,
                    restart=RestartBudget(rs.max, rs.window_s, rs.backoff_s, rs.backoff_max_s),
                    latency_node=gc.final().name,
                    # /health should see a camera drop within about a second
                    stats_interval_s=0.5 if gc.http.listen else 1.0)
    ops = None
    if gc.http.listen:
        from pipeline.ops import OpsError, start_for_run
        try:
            ops = start_for_run(gc, specs, runner, source_urls(gc), calibration_dates(gc))
        except OpsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        result = runner.run()
    finally:
        if ops is not None:
            ops.close()
    print(result.summary, file=sys.stderr)
    files = [f for view in result.views.values() for f in view.files()]
    if files:
        print(f"recording: {', '.join(files)}", file=sys.stderr)
    if args.summary_json:
        import json
        Path(args.summary_json).write_text(json.dumps(result.to_json_dict(), indent=1, default=str))
    if result.exit_code != 0:
        print(f"error: {result.reason}", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
