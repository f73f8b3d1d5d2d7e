"""Abusing a running ``batchdigits serve`` (loopback only), bounded in count and time:
random bytes, truncated images, huge headers, wrong content types, slow senders, and
concurrent uploads just under and just over the size limit. Used by the CI test
(``tests/test_web_abuse.py``, a few hundred requests) and the benchmark
(``tests/benchmarks/web_abuse.py``, 2,000 requests and a 30 s trickle)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def post(port: int, body: bytes, content_type: str | None, headers: dict | None = None):
    """``(status, JSON answer or None)``; a connection the server cut counts as 0."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        all_headers = {
            **({"Content-Type": content_type} if content_type else {}),
            **(headers or {}),
        }
        conn.request("POST", "/api/predict", body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, None
    except (ConnectionError, http.client.HTTPException, OSError):
        return 0, None
    finally:
        conn.close()


def trickle(port: int, body: bytes, seconds: float):
    """Send a good request's body a few bytes at a time over ``seconds``."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 60) as sock:
        head = (
            "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        pieces = 20
        step = -(-len(body) // pieces)
        for i in range(0, len(body), step):
            sock.sendall(body[i : i + step])
            time.sleep(seconds / pieces)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def bad_requests(n: int, digit: np.ndarray, seed: int = 0):
    """``n`` bad requests, each ``(kind, body, content type, headers)``."""
    rng = np.random.default_rng(seed)
    good = png(digit)
    buf = io.BytesIO()
    Image.fromarray(digit).resize((200, 200)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    kinds = ("random", "truncated", "huge-header", "content-type", "empty")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "random":
            yield kind, rng.bytes(int(rng.integers(1, 4000))), "application/octet-stream", None
        elif kind == "truncated":
            source = good if i % 2 else jpeg
            cut = int(rng.integers(1, len(source) * 4 // 5))  # well into the image data
            yield kind, source[:cut], "image/png", None
        elif kind == "huge-header":
            yield kind, good, "image/png", {"X-Junk": "a" * 300_000}
        elif kind == "content-type":
            yield kind, good, str(rng.choice(["text/plain", "application/json", ""])) or None, None
        else:
            yield kind, b"", "image/png", None


def near_limit(limit: int, seed: int = 1) -> tuple[bytes, bytes]:
    """A valid PNG just under ``limit`` bytes and a body just over it."""
    rng = np.random.default_rng(seed)
    side = int((limit * 0.99) ** 0.5)  # noise does not compress: about a byte a pixel
    under = png(rng.integers(0, 256, (side, side), dtype=np.uint8))
    while len(under) >= limit:
        side -= 4
        under = png(rng.integers(0, 256, (side, side), dtype=np.uint8))
    return under, rng.bytes(limit + 1)


def abuse(port: int, digit: np.ndarray, label: int, n: int, trickle_seconds: float, limit: int):
    """Run the whole abuse; returns counts by kind and status, failures, and the check."""
    statuses: Counter = Counter()
    failures = []
    with ThreadPoolExecutor(8) as pool:
        slow = pool.submit(trickle, port, png(digit), trickle_seconds)
        jobs = [
            (kind, pool.submit(post, port, body, ctype, headers))
            for kind, body, ctype, headers in bad_requests(n, digit)
        ]
        for kind, job in jobs:
            status, answer = job.result()
            statuses[(kind, status)] += 1
            # A header over waitress' limit: it answers 431 and closes with the rest of the
            # header unread, so the client's kernel may get a reset before the answer is
            # read (TCP, not the server): counted as status 0, not a failure.
            reset = kind == "huge-header" and status == 0
            json_4xx = 400 <= status < 500 and isinstance(answer, dict) and "error" in answer
            if not (json_4xx or reset):
                failures.append((kind, status, answer))
        under, over = near_limit(limit)
        with ThreadPoolExecutor(20) as burst:
            near = [burst.submit(post, port, body, "image/png") for body in [under, over] * 10]
            for i, job in enumerate(near):
                status, answer = job.result()
                kind = "under-limit" if i % 2 == 0 else "over-limit"
                statuses[(kind, status)] += 1
                ok = status == 200 if kind == "under-limit" else status == 413
                if not ok or not isinstance(answer, dict):
                    failures.append((kind, status, answer))
        status, answer = slow.result()
        statuses[("slow-sender", status)] += 1
        if status != 200 or answer.get("prediction") != label:
            failures.append(("slow-sender", status, answer))
    status, answer = post(port, png(digit), "image/png")
    statuses[("good-after", status)] += 1
    if status != 200 or answer.get("prediction") != label:
        failures.append(("good-after", status, answer))
    return statuses, failures
