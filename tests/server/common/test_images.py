"""Image inputs: URLs (from a local http.server on 127.0.0.1 only), SSRF refusals, limits."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.errors import InputError
from dtseg.server.common.decode_budget import DecodeBudget
from dtseg.server.common.images import check_url, decode_base64
from tests.server.server_helpers import png_bytes, synthetic_image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def orientation6_jpeg() -> bytes:
    """A 64x48 (WxH) JPEG whose EXIF says: rotate 90 degrees clockwise to view (phones' portrait)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(synthetic_image(48, 64, seed=5)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()

POINT = {"point_coords": [[20, 18]], "point_labels": [1]}


@pytest.fixture(scope="module")
def image_server(image: np.ndarray) -> Iterator[str]:
    """127.0.0.1 only: /img.png, /redirect/N (N hops to it), /slow, /text, /missing."""
    data = png_bytes(image)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/img.png":
                self._send(200, data, "image/png")
            elif self.path.startswith("/redirect/"):
                hops = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", "/img.png" if hops <= 1 else f"/redirect/{hops - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/slow":
                time.sleep(2.0)
                self._send(200, data, "image/png")
            elif self.path == "/text":
                self._send(200, b"not an image", "text/plain")
            else:
                self._send(404, b"no", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # the client under test may hang up early (a timeout or size limit it enforces)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_image_and_base64_typed_url(client: TestClient, engine: SamEngine, image_server: str,
                                        embedded: str) -> None:
    calls = engine.encoder_calls
    for kind in ("url", "base64"):  # Roboflow's own example sends a URL with type base64
        response = client.post("/sam/segment_image", json={
            "image": {"type": kind, "value": f"{image_server}/img.png"}, "image_id": embedded, **POINT})
        assert response.status_code == 200, response.text
    assert engine.encoder_calls == calls  # the same pixels as the embedded image
    hops = client.post("/sam/segment_image", json={
        "image": {"type": "url", "value": f"{image_server}/redirect/3"}, "image_id": embedded, **POINT})
    assert hops.status_code == 200


@pytest.mark.parametrize("path, fragment", [
    ("/redirect/5", "redirects"),
    ("/text", "not a decodable image"),
    ("/missing", "HTTP 404"),
])
def test_url_failures_are_400(client: TestClient, image_server: str, path: str, fragment: str) -> None:
    response = client.post("/sam/segment_image", json={"image": {"type": "url", "value": image_server + path}, **POINT})
    assert response.status_code == 400 and fragment in response.json()["message"]


def test_url_size_and_time_limits(make_client, image_server: str) -> None:
    tiny = make_client(url_fetch={"allow_private": True, "max_mb": 0.001})
    big = tiny.post("/sam/segment_image", json={"image": {"type": "url", "value": f"{image_server}/img.png"}, **POINT})
    assert big.status_code == 400 and "bytes" in big.json()["message"]
    hasty = make_client(url_fetch={"allow_private": True, "timeout_s": 0.5})
    slow = hasty.post("/sam/segment_image", json={"image": {"type": "url", "value": f"{image_server}/slow"}, **POINT})
    assert slow.status_code == 400 and "took longer than 0.5 s" in slow.json()["message"]
    assert hasty.get("/healthz").status_code == 200


class DribblingServer:
    """A raw socket server that answers with a valid PNG, but sends its response headers one byte
    every 50 ms (an X-Pad header of 200 bytes: ~12 s in all) unless the client hangs up first."""

    def __init__(self, body: bytes) -> None:
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: " + b"a" * 200
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        self.body = body
        self.headers_sent = threading.Event()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/img.png"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    for i in range(len(self.head)):
                        if self.stop.wait(0.05):
                            return
                        conn.sendall(self.head[i:i + 1])
                    self.headers_sent.set()
                    conn.sendall(self.body)
                except OSError:  # the client hung up
                    continue

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def dribbling_server(image: np.ndarray) -> Iterator[DribblingServer]:
    server = DribblingServer(png_bytes(image))
    try:
        yield server
    finally:
        server.close()


def test_the_deadline_covers_slow_response_headers(make_client, dribbling_server: DribblingServer) -> None:
    """Every byte arrives well within httpx's per-read timeout; only an overall deadline cuts the
    fetch off while the response headers are still arriving."""
    client = make_client(url_fetch={"allow_private": True, "timeout_s": 1.0})
    response = client.post("/sam/embed_image", json={"image": {"type": "url", "value": dribbling_server.url}})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "image.value" and "took longer than 1 s" in response.json()["message"]
    assert not dribbling_server.headers_sent.is_set(), "the fetch waited for all the headers"


def test_the_decode_budget_holds_images_back_until_pixels_are_free() -> None:
    budget = DecodeBudget(100)
    entered, leave = threading.Event(), threading.Event()

    def second_image() -> None:
        with budget.reserve(60):
            entered.set()
            leave.wait(5)

    waiter = threading.Thread(target=second_image)
    with budget.reserve(60):
        waiter.start()
        assert not entered.wait(0.2)  # 60 + 60 > 100: the second image waits
        assert budget.used == 60
    assert entered.wait(5) and budget.used == 60  # now the waiter holds its 60
    leave.set()
    waiter.join(5)
    assert budget.used == 0
    with budget.reserve(10_000):  # larger than the whole budget: takes all of it, once free
        assert budget.used == 100


def test_request_images_decode_under_the_budget(make_client, monkeypatch) -> None:
    client = make_client()
    image = synthetic_image(40, 56, seed=21)  # pixels no other test embeds (the engine's cache is shared)
    budget = client.app.state.services.decode_budget
    seen: list[int] = []
    original = budget.reserve

    def spy(pixels: int):
        seen.append(pixels)
        return original(pixels)

    monkeypatch.setattr(budget, "reserve", spy)
    response = client.post("/sam/embed_image", json={"image": {"type": "base64", "value": b64(png_bytes(image))}})
    assert response.status_code == 200 and seen == [image.shape[0] * image.shape[1]] and budget.used == 0


def test_exif_orientation_applies_unless_the_request_opts_out(make_client) -> None:
    """Roboflow's disable_preproc_auto_orient is honoured; server.auto_orient=false turns it off for all."""
    upright, stored = {}, orientation6_jpeg()
    cases: tuple[tuple[str, dict[str, bool], bool], ...] = (
        ("auto", {}, False), ("opt_out", {}, True), ("server_off", {"auto_orient": False}, False))
    for name, config, flag in cases:
        client = make_client(**config)
        response = client.post("/sam/segment_image", json={
            "image": {"type": "base64", "value": b64(stored)}, "point_coords": [[2, 2]], "point_labels": [1],
            "format": "binary", "disable_preproc_auto_orient": flag})
        assert response.status_code == 200, response.text
        with np.load(io.BytesIO(response.content)) as data:
            upright[name] = data["masks"].shape[1:]
    assert upright == {"auto": (64, 48), "opt_out": (48, 64), "server_off": (48, 64)}


def test_private_addresses_refused_by_default(make_client, image_server: str) -> None:
    guarded: TestClient = make_client()
    port = image_server.rsplit(":", 1)[1]
    for url in (f"{image_server}/img.png", f"http://localhost:{port}/img.png", "http://[::1]/x.png",
                "http://10.1.2.3/x.png", "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]/x",
                "http://0.0.0.0/x", "http://100.64.0.1/x"):
        response = guarded.post("/sam/embed_image", json={"image": {"type": "url", "value": url}})
        assert response.status_code == 400, url
        assert "refused" in response.json()["message"] and response.json()["field"] == "image.value"
    for url in ("ftp://example.com/x.png", "file:///etc/passwd", "http:///nohost"):
        response = guarded.post("/sam/embed_image", json={"image": {"type": "url", "value": url}})
        assert response.status_code == 400, url


def test_check_url_allows_public_literals_without_connecting() -> None:
    check_url("http://93.184.216.34/x.png", allow_private=False)  # a global literal: no DNS, no connection
    with pytest.raises(InputError, match="refused"):
        check_url("http://192.168.0.10/x.png", allow_private=False)
    check_url("http://192.168.0.10/x.png", allow_private=True)


def test_base64_variants() -> None:
    assert decode_base64("data:image/png;base64,aGk=", "v") == b"hi"
    assert decode_base64("aGk", "v") == b"hi"
    assert decode_base64("a G\nk=", "v") == b"hi"
    assert decode_base64("-_8=", "v") == bytes([0xFB, 0xFF])
    with pytest.raises(InputError, match="base64"):
        decode_base64("a*b", "v")
