"""CURVE on tcp endpoints: ZeroMQ's authenticated encryption, with pyzmq's zmq.auth.

    python -m pipeline keys --out keys/            # server + one client key pair, allowed_clients/

Who is who: the socket that binds is the CURVE server (it holds `server_key`, and a ZAP
authenticator lets in only the client public keys found in `allowed_clients`); the socket that
connects is a CURVE client (it holds `client_key` and must know `server_public_key`). A peer
without CURVE, or with a key not in `allowed_clients`, fails the handshake: its messages never
reach the stage, and the binding node counts it (`auth_rejected`).

When CURVE applies (`security.curve`): `auto` on every tcp endpoint whose host is not loopback,
`always` on every tcp endpoint (loopback too). An endpoint that needs CURVE and has no keys is
refused at config time, unless `security.insecure: true`.

Secret key files are written 0600 and never logged; only their paths appear in the config log.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

ZAP_DOMAIN = "smokefusion"
# Handshake failures a monitor reports for a peer that is not let in: ZAP said no (unknown key),
# a protocol mismatch (a peer without CURVE), or no detail (a malformed handshake).
REJECT_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                 | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class SecurityError(ValueError):
    """Keys missing or unreadable; the one-line message names the key and what was expected."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost are loopback; anything else (0.0.0.0 included) is not."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False           # a host name other than localhost: assume it leaves this machine


def tcp_host(address: str) -> str | None:
    """The host of a tcp://HOST:PORT address, None for other transports."""
    if not address.startswith("tcp://"):
        return None
    return address[len("tcp://"):].rpartition(":")[0]


def needs_curve(address: str, mode: str) -> bool:
    """Whether an endpoint address must use CURVE under security.curve = mode (auto | always)."""
    host = tcp_host(address)
    if host is None:
        return False
    return mode == "always" or not is_loopback(host)


@dataclass(frozen=True)
class CurveKeys:
    """The key material one socket needs: a server's own key pair, or a client's key pair plus
    the server's public key (z85 bytes)."""
    server: bool
    public: bytes
    secret: bytes
    server_public: bytes = b""

    def apply(self, sock: zmq.Socket) -> None:
        """Set the CURVE options on a socket before it binds or connects."""
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        if self.server:
            sock.curve_server = True
            sock.zap_domain = ZAP_DOMAIN.encode()
        else:
            sock.curve_serverkey = self.server_public


def _load(path: str, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    if not path:
        raise SecurityError(f"security.{what}: required (make keys with: python -m pipeline keys --out DIR)")
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise SecurityError(f"security.{what}: cannot read key file {path!r} ({e})") from None
    if secret and not sec:
        raise SecurityError(f"security.{what}: {path!r} holds no secret key (expected the .key_secret file)")
    return public, sec


def keys_for(security: dict, bind: bool) -> CurveKeys:
    """The CURVE keys a binding (server) or connecting (client) socket uses, from the
    `security` config section (as a dict). Raises SecurityError naming the missing key."""
    if bind:
        public, secret = _load(security.get("server_key", ""), "server_key", True)
        clients = security.get("allowed_clients", "")
        if not clients or not Path(clients).is_dir():
            raise SecurityError(f"security.allowed_clients: expected a directory of client public keys (*.key), "
                                f"got {clients!r}")
        return CurveKeys(server=True, public=public, secret=secret)
    public, secret = _load(security.get("client_key", ""), "client_key", True)
    server_public, _ = _load(security.get("server_public_key", ""), "server_public_key", False)
    return CurveKeys(server=False, public=public, secret=secret, server_public=server_public)


def check_endpoint(address: str, bind: bool, security: dict, where: str) -> bool:
    """Config-time check of one endpoint: True if it will use CURVE. Raises SecurityError (one
    line, naming `where`) if it needs CURVE, has no usable keys and insecure is not set."""
    if not needs_curve(address, security.get("curve", "auto")):
        return False
    try:
        keys_for(security, bind)
        return True
    except SecurityError as e:
        if security.get("insecure"):
            log.warning("%s: %s is unauthenticated and unencrypted (security.insecure: true)", where, address)
            return False
        raise SecurityError(f"{where}: {address} needs CURVE ({'not loopback' if not is_loopback(tcp_host(address) or '') else 'security.curve: always'}) "
                            f"but {e}; or set security.insecure: true to run without") from None


class Authenticator:
    """The ZAP handler of one zmq.Context: lets in the client keys of `allowed_clients`.

    A context has one ZAP endpoint, so nodes sharing a context (thread mode) share one handler:
    the first creates it, the last stop() ends it."""

    _shared: dict[int, list] = {}        # id(ctx) -> [ThreadAuthenticator, users]
    _lock = threading.Lock()

    def __init__(self, ctx: zmq.Context, allowed_clients: str):
        from zmq.auth.thread import ThreadAuthenticator
        self._key = id(ctx)
        with self._lock:
            entry = self._shared.get(self._key)
            if entry is None:
                auth = ThreadAuthenticator(ctx, log=logging.getLogger("pipeline.security.zap"))
                auth.start()
                auth.configure_curve(domain=ZAP_DOMAIN, location=allowed_clients)
                entry = self._shared[self._key] = [auth, 0]
            entry[1] += 1

    def stop(self) -> None:
        with self._lock:
            entry = self._shared.get(self._key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._shared[self._key]
                entry[0].stop()


class HandshakeWatch:
    """Counts peers whose CURVE handshake a binding socket refused (a thread on its monitor)."""

    def __init__(self, sock: zmq.Socket, name: str):
        self.rejected = 0
        self.name = name
        self._mon = sock.get_monitor_socket(REJECT_EVENTS)
        self._sock = sock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"curve-watch-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._mon.poll(100):
                    continue
                msg = parse_monitor_message(self._mon.recv_multipart())
            except zmq.ZMQError:
                return
            if msg["event"] & REJECT_EVENTS:
                self.rejected += 1
                if self.rejected == 1 or self.rejected % 100 == 0:
                    log.warning("%s: refused a peer that failed CURVE authentication (%d so far)",
                                self.name, self.rejected)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._mon.close(0)


def make_keys(out_dir: str | Path, clients: list[str], force: bool = False) -> list[Path]:
    """Write server.key/.key_secret, NAME.key/.key_secret per client, and copy each client's
    public key into OUT/allowed_clients/. Refuses to overwrite unless `force`. Returns the files."""
    out = Path(out_dir)
    names = ["server", *clients]
    if len(set(names)) != len(names):
        raise SecurityError(f"keys: client names must be unique and not 'server', got {clients}")
    existing = [out / f"{n}.key_secret" for n in names if (out / f"{n}.key_secret").exists()]
    if existing and not force:
        raise SecurityError(f"keys: {existing[0]} exists (use --force to replace the keys)")
    out.mkdir(parents=True, exist_ok=True)
    allowed = out / "allowed_clients"
    allowed.mkdir(exist_ok=True)
    written = []
    for n in names:
        for suffix in (".key", ".key_secret"):
            (out / f"{n}{suffix}").unlink(missing_ok=True)
        public, secret = zmq.auth.create_certificates(str(out), n)
        os.chmod(secret, 0o600)
        written += [Path(public), Path(secret)]
        if n != "server":
            shutil.copy(public, allowed / f"{n}.key")
            written.append(allowed / f"{n}.key")
    return written
