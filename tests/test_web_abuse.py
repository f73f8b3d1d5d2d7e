"""``batchdigits serve --server waitress`` under abuse, as a real process on loopback:
every bad request a 4xx with a JSON error, never a 500 or a hang, memory bounded, and a
good request answered right afterwards (a bounded version of the benchmark)."""

from __future__ import annotations

import subprocess
import time

import pytest

pytest.importorskip("waitress", reason="the web extra is not installed")

from helpers import EXE, free_port, peak_rss_mib, start_server  # noqa: E402
from webabuse import abuse  # noqa: E402

LIMIT = 200_000


@pytest.mark.slow
def test_server_under_abuse(mnist):
    port = free_port()
    args = [EXE, "serve", "--server", "waitress", "--port", str(port)]
    args += ["--max-content-length", str(LIMIT)]
    server = start_server(args, port, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        statuses, failures = abuse(port, mnist.x_test[0], int(mnist.y_test[0]), 300, 3.0, LIMIT)
        assert failures == [], failures[:5]
        assert time.monotonic() - t0 < 300
        assert sum(statuses.values()) == 300 + 20 + 2
        assert not any(status >= 500 for _, status in statuses)
        assert not any(status == 0 for kind, status in statuses if kind != "huge-header")
        assert statuses[("huge-header", 431)] >= 50 and statuses[("over-limit", 413)] == 10
        assert server.poll() is None and peak_rss_mib(server.pid) < 1536
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert b"Traceback" not in stderr
