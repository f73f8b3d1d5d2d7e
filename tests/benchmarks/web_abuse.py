"""The web server under abuse, full size (a script, not a test; CI runs a bounded version
in tests/test_web_abuse.py):

    python tests/benchmarks/web_abuse.py [--requests 2000] [--trickle 30] [--limit 5242880]

Starts ``batchdigits serve --server waitress`` on a free loopback port, sends the bad
requests (random bytes, truncated images, 300 KB headers, wrong content types, empty
bodies) 8 at a time, one good image trickled over ``--trickle`` seconds, 20 concurrent
uploads just under and just over ``--limit``, then one good request; prints the statuses
by kind, any failure, the time and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import EXE, free_port, start_server  # noqa: E402
from webabuse import abuse  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "mnist-test-2000.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--trickle", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=5 * 1024 * 1024)
    args = parser.parse_args()
    data = np.load(FIXTURE)
    port = free_port()
    exe = EXE
    command = [exe, "serve", "--server", "waitress", "--port", str(port)]
    server = start_server(command + ["--max-content-length", str(args.limit)], port)
    try:
        t0 = time.monotonic()
        digit, label = data["x_test"][0], int(data["y_test"][0])
        statuses, failures = abuse(port, digit, label, args.requests, args.trickle, args.limit)
        seconds = time.monotonic() - t0
        status = Path(f"/proc/{server.pid}/status").read_text()
        hwm = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:"))
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(30)
    for (kind, code), count in sorted(statuses.items()):
        print(f"{kind:14s} {code:4d} x{count}")
    print(f"failures: {len(failures)} {failures[:3]}")
    print(
        f"{sum(statuses.values())} requests in {seconds:.1f} s; server peak RSS "
        f"{hwm / 1024:.0f} MiB; still serving: {alive}"
    )


if __name__ == "__main__":
    main()
