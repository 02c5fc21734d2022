"""Runtime tools.

    python -m pipeline keys --out keys/                    # CURVE key pairs: server + client
    python -m pipeline keys --out keys/ --clients hostA,hostB

Writes DIR/server.key (public) and DIR/server.key_secret, DIR/NAME.key and DIR/NAME.key_secret per
client (secret files 0600), and copies each client's public key into DIR/allowed_clients/.
Copy to each host only what it needs (docs/operations.md). Exit 2 with a one-line error on bad
input or existing keys (--force replaces them).
"""
from __future__ import annotations

import argparse
import re
import sys

from pipeline.security import SecurityError, make_keys

CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keys", help="make CURVE key pairs for authenticated tcp endpoints")
    k.add_argument("--out", required=True, metavar="DIR", help="directory for the key files (created)")
    k.add_argument("--clients", default="client", metavar="NAME[,NAME]",
                   help="client key pairs to make (default: client)")
    k.add_argument("--force", action="store_true", help="replace existing keys")
    args = p.parse_args(argv)
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    bad = [c for c in clients if not CLIENT_NAME.fullmatch(c)]
    if not clients or bad:
        print(f"error: --clients: expected names of letters, digits, '_' or '-', got {args.clients!r}", file=sys.stderr)
        return 2
    try:
        files = make_keys(args.out, clients, force=args.force)
    except (SecurityError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
