"""CURVE on tcp endpoints: key generation, the config-time refusal of an unauthenticated public
bind, and a split graph run as two "hosts" on 127.0.0.1 and 127.0.0.2 (cameras + registration on
one, fusion + recorder on the other) while two intruders try to inject frames into fusion."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import zmq
import zmq.auth

from calibration_files import write_calibration
from pipeline.codec import encode
from pipeline.config import ConfigError
from app.registry import load
from pipeline.graph import build_specs, check_security, select_nodes
from pipeline.packet import Packet
from pipeline.security import is_loopback, make_keys, needs_curve

REPO = Path(__file__).resolve().parents[2]


def test_loopback_and_when_curve_applies():
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("hostB")
    assert not needs_curve("tcp://127.0.0.1:5553", "auto") and needs_curve("tcp://127.0.0.1:5553", "always")
    assert needs_curve("tcp://0.0.0.0:5553", "auto") and not needs_curve("ipc:///tmp/x.sock", "always")


def test_keys_cli_writes_pairs_and_refuses_to_overwrite(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipeline", "keys", *a], cwd=REPO,
                                    capture_output=True, text=True, timeout=60)
    r = run("--out", str(tmp_path / "k"), "--clients", "hostA,hostB")
    assert r.returncode == 0, r.stderr
    k = tmp_path / "k"
    assert sorted(p.name for p in (k / "allowed_clients").iterdir()) == ["hostA.key", "hostB.key"]
    assert oct((k / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    public, secret = zmq.auth.load_certificate(str(k / "hostA.key_secret"))
    assert len(public) == 40 and len(secret) == 40
    r = run("--out", str(k))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("exists (use --force to replace the keys)")
    r = run("--out", str(k), "--clients", "bad name")
    assert r.returncode == 2 and "--clients: expected names" in r.stderr


def public_bind_config(tmp_path, **security):
    ov = {"registration.calibration": str(write_calibration(tmp_path / "cal.yaml")),
          "pipeline.allow_public_bind": True, "endpoints.fusion": "pull+bind:tcp://0.0.0.0:5999",
          "endpoints.fusion_peer": "push+connect:tcp://hostB:5999", "detector_feed.enabled": False}
    ov.update({f"security.{k}": v for k, v in security.items()})
    return load(REPO / "configs" / "demo.yaml", ov)


def test_a_public_bind_without_keys_is_refused_unless_insecure(tmp_path):
    gc = public_bind_config(tmp_path)
    specs = build_specs(gc, "process")
    with pytest.raises(ConfigError) as e:
        check_security(select_nodes(specs, "fusion,recorder", gc), gc)
    msg = str(e.value)
    assert "\n" not in msg and "fusion input: tcp://0.0.0.0:5999 needs CURVE (not loopback)" in msg
    assert "security.server_key: required (make keys with: python -m pipeline keys --out DIR)" in msg
    # The connecting host needs the client keys.
    with pytest.raises(ConfigError, match="registration -> fusion: tcp://hostB:5999 needs CURVE .*security.client_key"):
        check_security(select_nodes(specs, "capture_vis,capture_ir,registration", gc), gc)
    gc = public_bind_config(tmp_path, insecure=True)
    check_security(build_specs(gc, "process"), gc)      # explicitly insecure: allowed (with a warning)
    make_keys(tmp_path / "keys", ["hostA"])
    k = tmp_path / "keys"
    gc = public_bind_config(tmp_path, server_key=str(k / "server.key_secret"), allowed_clients=str(k / "allowed_clients"),
                            client_key=str(k / "hostA.key_secret"), server_public_key=str(k / "server.key"))
    check_security(build_specs(gc, "process"), gc)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def intruder_packet(i: int) -> list:
    vis = np.full((256, 320, 3), 255, np.uint8)
    ir = np.full((256, 320), 255, np.uint8)
    return encode(Packet(stream="intruder", kind="pair", seq=i, t_mono=time.monotonic(), t_wall=time.time(),
                         meta={"calibration_id": "x"}, buffers={"vis": vis, "ir": ir}))


def test_two_hosts_on_loopback_with_curve_reject_an_unauthenticated_sender(tmp_path):
    try:
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError as e:
        pytest.skip(f"cannot bind 127.0.0.2 here ({e})")
    k = tmp_path / "keys"
    make_keys(k, ["hostA"])
    rogue_public, rogue_secret = zmq.auth.create_certificates(str(tmp_path), "rogue")   # not in allowed_clients
    port = free_port("127.0.0.2")
    fusion_ep = f"tcp://127.0.0.2:{port}"
    common = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--fuser", "laplacian",
              "--calibration", str(write_calibration(tmp_path / "cal.yaml")), "--output", str(tmp_path / "rec"),
              "--set", "detector_feed.enabled=false", "--set", "pipeline.startup_timeout_s=180",
              "--set", "pipeline.shutdown_timeout_s=30", "--set", f"endpoints.fusion=pull+bind:{fusion_ep}",
              "--set", "security.curve=always"]     # both hosts are loopback here: require CURVE anyway
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    host_b = common + ["--only", "fusion,recorder", "--duration", "0", "--summary-json", str(tmp_path / "b.json"),
                       "--set", f"security.server_key={k / 'server.key_secret'}",
                       "--set", f"security.allowed_clients={k / 'allowed_clients'}"]
    host_a = common + ["--only", "capture_vis,capture_ir,registration", "--duration", "8",
                       "--summary-json", str(tmp_path / "a.json"),
                       "--set", f"security.client_key={k / 'hostA.key_secret'}",
                       "--set", f"security.server_public_key={k / 'server.key'}"]
    log_b = open(tmp_path / "b.log", "w")
    proc_b = subprocess.Popen(host_b, cwd=REPO, env=env, stdout=log_b, stderr=log_b)
    ctx = zmq.Context()
    intruders = []
    try:
        # Intruder 1 speaks no CURVE at all; intruder 2 has a key pair fusion does not know.
        plain = ctx.socket(zmq.PUSH)
        rogue = ctx.socket(zmq.PUSH)
        rogue.curve_publickey, rogue.curve_secretkey = zmq.auth.load_certificate(rogue_secret)
        rogue.curve_serverkey, _ = zmq.auth.load_certificate(str(k / "server.key"))
        for s in (plain, rogue):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(fusion_ep)
            intruders.append(s)
        ra = subprocess.run(host_a, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        sent = 0
        for i in range(20):
            for s in intruders:
                try:
                    s.send_multipart(intruder_packet(i), flags=zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:       # no handshake ever completes: nowhere to queue
                    pass
        proc_b.wait(timeout=120)
    finally:
        for s in intruders:
            s.close(0)
        ctx.term()
        if proc_b.poll() is None:
            proc_b.kill()
        log_b.close()
    err_b = (tmp_path / "b.log").read_text()
    assert ra.returncode == 0, ra.stderr[-2000:]
    assert proc_b.returncode == 0, err_b[-2000:]
    b = json.loads((tmp_path / "b.json").read_text())["nodes"]
    fusion = b["fusion"]
    # Host A's authenticated frames arrived and were fused and recorded ...
    assert fusion["stage"]["per_stream"].get("demo", 0) >= 10, fusion
    # ... the intruders' never reached fusion, and their handshakes were refused and counted.
    assert "intruder" not in fusion["stage"]["per_stream"]
    assert fusion["in"] == fusion["stage"]["per_stream"]["demo"]
    assert fusion["auth_rejected"] >= 2, fusion
    assert "refused a peer that failed CURVE authentication" in err_b
    files = sorted((tmp_path / "rec").glob("fused_*.mp4"))
    with av.open(str(files[0])) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == b["recorder"]["stage"]["frames_written"]


def test_nodes_sharing_a_context_share_one_zap_handler(tmp_path):
    """Thread mode: every node's sockets live in one context, which has one ZAP endpoint."""
    from pipeline.security import Authenticator, keys_for
    from pipeline.transport import open_socket, parse_endpoint
    k = tmp_path / "keys"
    make_keys(k, ["hostA"])
    sec = {"server_key": str(k / "server.key_secret"), "allowed_clients": str(k / "allowed_clients"),
           "client_key": str(k / "hostA.key_secret"), "server_public_key": str(k / "server.key")}
    ctx, ctx2 = zmq.Context(), zmq.Context()
    a = Authenticator(ctx, sec["allowed_clients"])
    b = Authenticator(ctx, sec["allowed_clients"])      # a second node: no second bind of the ZAP endpoint
    a.stop()                                            # the first node ends; the handler stays for b
    port = free_port("127.0.0.1")
    srv = open_socket(ctx, parse_endpoint(f"pull+bind:tcp://127.0.0.1:{port}"), curve=keys_for(sec, True))
    cli = open_socket(ctx2, parse_endpoint(f"push+connect:tcp://127.0.0.1:{port}"), curve=keys_for(sec, False))
    try:
        cli.send(b"hello")
        assert srv.poll(10_000) and srv.recv() == b"hello"
    finally:
        cli.close(0)
        srv.close(0)
        b.stop()
        ctx.term()
        ctx2.term()
