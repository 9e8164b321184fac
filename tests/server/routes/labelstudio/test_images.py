"""Task image URLs -> bytes: local folders, data: URLs, Label Studio (with its token), the web."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dtseg.errors import InputError
from dtseg.labelstudio.settings import Connection, LabelStudioConfig
from dtseg.server.config import UrlFetchConfig
from dtseg.server.routes.labelstudio.images import read_task_image

IMAGE = b"\x89PNG pretend image bytes"
TOKEN = "ls-token"


@pytest.fixture(scope="module")
def studio() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback stand-in for Label Studio's file routes: answers only with the right token;
    records each request's path and Authorization header."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append({"path": self.path, "auth": auth})
            ok = auth == f"Token {TOKEN}" or self.path.startswith("/public/")
            body = IMAGE if ok else b"unauthorized"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_local_dirs_map_url_prefixes_to_folders(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "a.png").write_bytes(IMAGE)
    settings = LabelStudioConfig(local_dirs={"/data/local-files/?d=": str(tmp_path)})
    assert read_task_image("/data/local-files/?d=sub%20dir/a.png", settings, UrlFetchConfig()) == IMAGE
    with pytest.raises(InputError, match="leaves the folder"):
        read_task_image("/data/local-files/?d=../../etc/passwd", settings, UrlFetchConfig())
    with pytest.raises(InputError, match=r"cannot read 'sub dir/b\.png'") as info:
        read_task_image("/data/local-files/?d=sub dir/b.png", settings, UrlFetchConfig(), field="task.data")
    assert info.value.field == "task.data"


def test_data_urls() -> None:
    url = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    assert read_task_image(url, LabelStudioConfig(), UrlFetchConfig()) == IMAGE


def test_label_studio_paths_are_fetched_with_the_token(studio: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = studio
    configured = LabelStudioConfig(url=url, api_token=TOKEN)  # the operator's Label Studio: loopback is fine
    assert read_task_image("/data/upload/1/a.png", configured, UrlFetchConfig()) == IMAGE
    assert seen[-1] == {"path": "/data/upload/1/a.png", "auth": f"Token {TOKEN}"}
    assert read_task_image(f"{url}/data/local-files/?d=x.png", configured, UrlFetchConfig()) == IMAGE
    # the token /setup sent, when none is configured
    from_setup = Connection(hostname="http://elsewhere.invalid", access_token=TOKEN)
    assert read_task_image("/data/upload/2.png", LabelStudioConfig(url=url), UrlFetchConfig(), from_setup) == IMAGE
    assert seen[-1]["auth"] == f"Token {TOKEN}"


def test_the_setup_hostname_is_fetched_under_the_url_guards(studio: tuple[str, list[dict[str, str]]]) -> None:
    url, _seen = studio
    setup = Connection(hostname=url, access_token=TOKEN)
    with pytest.raises(InputError, match="loopback/private"):
        read_task_image("/data/upload/1/a.png", LabelStudioConfig(), UrlFetchConfig(), setup)
    allowed = UrlFetchConfig(allow_private=True)
    assert read_task_image("/data/upload/1/a.png", LabelStudioConfig(), allowed, setup) == IMAGE


def test_the_token_never_goes_to_other_hosts(studio: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = studio
    other = url.replace("127.0.0.1", "localhost")  # another origin, the same server
    settings = LabelStudioConfig(url=url, api_token=TOKEN)
    assert read_task_image(f"{other}/public/a.png", settings, UrlFetchConfig(allow_private=True)) == IMAGE
    assert seen[-1] == {"path": "/public/a.png", "auth": ""}
    with pytest.raises(InputError, match="HTTP 401"):
        read_task_image(f"{other}/data/upload/a.png", settings, UrlFetchConfig(allow_private=True))


@pytest.mark.parametrize("url, message", [
    ("", "expected an image URL"),
    (None, "expected an image URL"),
    ("/data/upload/1/a.png", "Label Studio's address is unknown"),
    ("s3://bucket/a.png", "cannot read s3 URL"),
    ("images/a.png", "cannot read scheme-less URL"),
])
def test_urls_that_cannot_be_read(url: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_task_image(url, LabelStudioConfig(), UrlFetchConfig())


def test_local_dirs_match_label_studio_urls_with_its_address(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(IMAGE)
    mapping = {"/data/local-files/?d=": str(tmp_path)}
    settings = LabelStudioConfig(url="http://ls.invalid:8080", local_dirs=mapping)
    assert read_task_image("http://ls.invalid:8080/data/local-files/?d=a.png", settings, UrlFetchConfig()) == IMAGE
    from_setup = Connection(hostname="http://other.invalid")
    url = "http://other.invalid/data/local-files/?d=a.png"
    assert read_task_image(url, LabelStudioConfig(local_dirs=mapping), UrlFetchConfig(), from_setup) == IMAGE
