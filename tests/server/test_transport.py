"""The transport of a real ``dtseg serve`` on loopback, with short deadlines: slow, silent and
idle clients are closed, a client without a key gets its 401 before sending its body, keys stay
out of the access log, and SIGTERM answers a request that cannot finish with a 503, not a 500."""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.server.live import Served, serving
from tests.server.server_helpers import png_bytes, synthetic_image

KEY = "transport-secret-key"
HEADER_S, BODY_S, KEEP_ALIVE_S = 1.0, 1.5, 1.0
BOUND_S = 30  # generous bound on waits that the deadlines above end much sooner


def write_config(path: Path, checkpoint: Path, **server: object) -> Path:
    path.write_text(yaml.safe_dump({"sam": {"model": "tiny", "checkpoint": str(checkpoint), "device": "cpu"},
                                    "server": {"api_keys": [KEY], **server}}))
    return path


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = write_config(tmp_path_factory.mktemp("transport") / "serve.yaml", tiny_checkpoint,
                          header_timeout_s=HEADER_S, body_timeout_s=BODY_S, keep_alive_s=KEEP_ALIVE_S)
    with serving(config, "--log-level", "info", timeout_s=120) as server:
        yield server


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=BOUND_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def trickle(sock: socket.socket, data: bytes, interval_s: float, closed: list[bytes]) -> None:
    """Send ``data`` one byte at a time until the server closes; append what it answered to ``closed``."""
    answer = b""
    for byte in data:
        readable, _, _ = select.select([sock], [], [], interval_s)
        if readable:
            answer = read_until_closed(sock)
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
    else:
        answer = read_until_closed(sock)
    closed.append(answer)


def request_head(path: str, length: int, key: bool = True) -> bytes:
    query = f"?api_key={KEY}" if key else ""
    return (f"POST {path}{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_slow_silent_and_idle_connections_are_closed(served: Served) -> None:
    """Silent sockets, headers at one byte per 0.3 s, a body at one byte per 0.3 s and an idle
    kept-alive connection are all closed by the server; it answers others meanwhile."""
    silent = [connect(served.url) for _ in range(3)]
    answers: list[bytes] = []
    slow_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    slow_body = json.dumps({"image_id": "x" * 300}).encode()
    threads = [threading.Thread(target=trickle, args=(connect(served.url), slow_head, 0.3, answers)) for _ in range(3)]
    for _ in range(3):
        sock = connect(served.url)
        sock.sendall(request_head("/sam/embed_image", len(slow_body)))
        threads.append(threading.Thread(target=trickle, args=(sock, slow_body, 0.3, answers)))
    idle = connect(served.url)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    for thread in threads:
        thread.start()
    assert requests.get(f"{served.url}/healthz", timeout=BOUND_S).ok  # the server answers meanwhile
    for sock in silent:
        assert read_until_closed(sock) == b""  # closed without a word
    idle_answer = read_until_closed(idle)  # one answer, then closed once idle
    assert idle_answer.startswith(b"HTTP/1.1 200") and idle_answer.count(b"HTTP/1.1") == 1
    for thread in threads:
        thread.join(timeout=BOUND_S)
    assert not any(t.is_alive() for t in threads), "a slow client was never closed"
    head_answers = [a for a in answers if b"408" not in a]
    body_answers = [a for a in answers if b"408" in a]
    assert head_answers == [b""] * 3, answers  # slow headers: closed without a word
    assert len(body_answers) == 3 and all(b"body_timeout_s" in a for a in body_answers), answers


def test_key_checked_before_the_body(served: Served) -> None:
    """A 50 MB body announced without a key: 401 and the connection closed while not one byte of
    the body was sent (the server did not wait for it)."""
    sock = connect(served.url)
    sock.sendall(request_head("/sam/segment_image", 50_000_000, key=False))
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 401") and b"api_key" in answer, answer[:300]
    assert b"connection: close" in answer.lower()


def test_client_hanging_up_mid_body_is_not_a_server_error(served: Served) -> None:
    for _ in range(3):
        sock = connect(served.url)
        sock.sendall(request_head("/sam/embed_image", 1000) + b'{"image_id": "')
        sock.close()
    time.sleep(1)  # the server sees the hang-ups, then a marked request, logged after whatever they logged
    assert requests.get(f"{served.url}/healthz", params={"after": "hang-ups"}, timeout=BOUND_S).ok
    deadline = time.monotonic() + BOUND_S
    while not any("/healthz?after=hang-ups" in line for line in served.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = "".join(served.output)
    assert "/healthz?after=hang-ups" in log
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


def test_api_keys_stay_out_of_the_access_log(served: Served) -> None:
    assert requests.get(f"{served.url}/info", params={"api_key": KEY, "x": "1"}, timeout=BOUND_S).ok
    assert requests.get(f"{served.url}/info", headers={"Authorization": f"Bearer {KEY}"}, timeout=BOUND_S).ok
    deadline = time.monotonic() + BOUND_S
    while not any("/info?api_key=***&x=1" in line for line in served.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = "".join(served.output)
    assert "/info?api_key=***&x=1" in log, log[-2000:]
    assert KEY not in log


class SlowImage(BaseHTTPRequestHandler):
    """``/fast.png`` in about a second, ``/slow.png`` over a minute (the server's fetch waits)."""

    image = png_bytes(synthetic_image())
    started: ClassVar[dict[str, threading.Event]] = {"/fast.png": threading.Event(), "/slow.png": threading.Event()}

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        pause = 1.0 / len(self.image) if self.path == "/fast.png" else 0.5
        SlowImage.started[self.path].set()
        try:
            for i in range(0, len(self.image), 64):
                self.wfile.write(self.image[i:i + 64])
                self.wfile.flush()
                time.sleep(pause * 64)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_sigterm_answers_503_and_exits_within_the_grace(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """SIGTERM with two requests running: the one that finishes within the grace gets its 200, the
    one that cannot gets a 503 (never a 500), and the process exits (status 0) without waiting for it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowImage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    config = write_config(tmp_path / "serve.yaml", tiny_checkpoint, shutdown_grace_s=4,
                          url_fetch={"allow_private": True, "timeout_s": 120})
    answers: dict[str, requests.Response] = {}

    def embed(name: str) -> None:
        body = {"image": {"type": "url", "value": f"{base}/{name}.png"}, "format": "binary"}
        answers[name] = requests.post(f"{served.url}/sam/embed_image", params={"api_key": KEY}, timeout=BOUND_S * 4,
                                      json=body)

    try:
        with serving(config, timeout_s=120) as served:
            threads = [threading.Thread(target=embed, args=(name,)) for name in ("slow", "fast")]
            for thread in threads:
                thread.start()
            assert all(event.wait(BOUND_S) for event in SlowImage.started.values())
            served.process.send_signal(signal.SIGTERM)
            assert served.process.wait(timeout=BOUND_S) == 0  # the slow fetch alone would take > 60 s
            for thread in threads:
                thread.join(timeout=BOUND_S)
    finally:
        httpd.shutdown()
    assert answers["fast"].status_code == 200, answers["fast"].text
    assert answers["slow"].status_code == 503, answers["slow"].text
    assert "shutting down" in answers["slow"].json()["message"]
