"""The exit-status convention of every command line here: 2 and one `error:` line for bad input."""
from __future__ import annotations

import sys
from typing import Any, Callable


def run_command(fn: Callable[[Any], int], args: Any, expected: tuple[type[Exception], ...]) -> int:
    """fn(args), or exit status 2 with `error: <message>` on stderr for an `expected` error."""
    try:
        return fn(args)
    except expected as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
