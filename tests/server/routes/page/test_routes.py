"""The page's routes in-process: the static page and its modules, ``/fetch_image``, ``/export``."""

from __future__ import annotations

import base64
import fnmatch
import functools
import io
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pycocotools.coco import COCO

from dtseg.masks import mask_to_rle
from tests.server.server_helpers import b64_image, png_bytes, synthetic_image

STATIC = Path(__file__).parents[4] / "dtseg" / "server" / "routes" / "page" / "static"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local http.server (127.0.0.1) with /img.png and /notes.txt."""
    root = tmp_path_factory.mktemp("www")
    (root / "img.png").write_bytes(png_bytes(synthetic_image(40, 60, seed=7)))
    (root / "notes.txt").write_text("not an image")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_page_and_every_module_it_imports_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="static/app.js">' in page.text and "<canvas" in page.text
    modules = {p.name for p in STATIC.glob("*.js")}
    for name in modules:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"]
        for imported in re.findall(r'from "\./([\w.]+)"', response.text):
            assert imported in modules, f"{name} imports a missing module {imported}"
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/nothing.js").status_code == 404


def test_every_static_file_is_package_data() -> None:
    """``pip install .`` ships the page: pyproject's package-data globs cover every static file."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((STATIC.parents[4] / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "dtseg.server.routes.page.static" in setuptools["packages"]
    globs = setuptools["package-data"]["dtseg.server.routes.page.static"]
    files = [p for p in STATIC.iterdir() if p.is_file()]
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in files}
    assert all(any(fnmatch.fnmatch(p.name, g) for g in globs) for p in files), (files, globs)


def test_page_needs_no_key_but_its_routes_do(make_client: Callable[..., TestClient]) -> None:
    c = make_client(api_keys=["k"])
    assert c.get("/").status_code == 200
    body = {"image": b64_image(synthetic_image()), "format": "coco", "objects": []}
    assert c.post("/export", json=body).status_code == 401
    assert c.post("/export", json=body, headers={"Authorization": "Bearer k"}).status_code == 200
    assert c.post("/fetch_image", json={"url": "http://127.0.0.1/x.png"}).status_code == 401


def test_fetch_image_uses_the_guarded_fetch(make_client: Callable[..., TestClient], files: str) -> None:
    open_client = make_client(url_fetch={"allow_private": True})
    response = open_client.post("/fetch_image", json={"url": f"{files}/img.png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == png_bytes(synthetic_image(40, 60, seed=7))
    text = open_client.post("/fetch_image", json={"url": f"{files}/notes.txt"})
    assert text.status_code == 400 and text.json()["field"] == "url"
    missing = open_client.post("/fetch_image", json={"url": f"{files}/missing.png"})
    assert missing.status_code == 400 and "404" in missing.json()["message"]
    guarded = make_client().post("/fetch_image", json={"url": f"{files}/img.png"})
    assert guarded.status_code == 400 and "private" in guarded.json()["message"]


def _objects(masks: list[np.ndarray], names: list[Any]) -> list[dict[str, Any]]:
    return [{"rle": mask_to_rle(m), "class_name": n,
             "sam_score": 0.5} for m, n in zip(masks, names, strict=True)]


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, list[np.ndarray]]:
    image = synthetic_image(48, 64)
    yy, xx = np.mgrid[:48, :64]
    ring = ((yy - 20) ** 2 + (xx - 22) ** 2 < 100) & ((yy - 20) ** 2 + (xx - 22) ** 2 > 16)  # a hole
    box = np.zeros((48, 64), bool)
    box[30:44, 36:58] = True
    return image, [ring, box, box[::-1]]


def test_export_coco_round_trips_masks_and_names(client: TestClient, scene: tuple[np.ndarray, list[np.ndarray]],
                                                 tmp_path: Path) -> None:
    image, masks = scene
    response = client.post("/export", json={"image": b64_image(image), "name": "scene", "format": "coco",
                                            "objects": _objects(masks, ["disc", "box", "disc"])})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="scene.json"'
    path = tmp_path / "coco.json"
    path.write_bytes(response.content)
    coco = COCO(str(path))
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "disc"}, {"id": 2, "name": "box"}]
    annotations = coco.loadAnns(coco.getAnnIds())
    assert [a["category_id"] for a in annotations] == [1, 2, 1]
    for annotation, mask in zip(annotations, masks, strict=True):
        assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)


def test_export_masks_and_annotated(client: TestClient, scene: tuple[np.ndarray, list[np.ndarray]]) -> None:
    image, masks = scene
    body = {"image": b64_image(image), "name": "scene", "objects": _objects(masks, [None, "box", ""])}
    zipped = client.post("/export", json={**body, "format": "masks_png"})
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert archive.namelist() == ["scene_0.png", "scene_1.png", "scene_2.png"]
        for i, mask in enumerate(masks):
            png = cv2.imdecode(np.frombuffer(archive.read(f"scene_{i}.png"), np.uint8), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(png == 255, mask) and np.array_equal(png == 0, ~mask)
    annotated = client.post("/export", json={**body, "format": "annotated"})
    assert annotated.status_code == 200 and annotated.headers["content-type"] == "image/png"
    drawn = cv2.imdecode(np.frombuffer(annotated.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == image.shape and np.any(drawn != cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_export_refuses_more_masks_than_it_holds(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dtseg.server.routes.page.export.MAX_MASK_PIXELS", 48 * 64 * 2)
    empty = {"rle": mask_to_rle(np.zeros((48, 64), bool))}
    body = {"image": b64_image(synthetic_image()), "format": "coco"}
    assert client.post("/export", json={**body, "objects": [empty] * 2}).status_code == 200
    refused = client.post("/export", json={**body, "objects": [empty] * 3})
    assert refused.status_code == 400 and refused.json()["field"] == "objects" and "fewer" in refused.json()["message"]


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"objects": [{"rle": {"size": [48, 64], "counts": mask_to_rle(np.ones((96, 64), bool))["counts"]}}]},
     400, "objects[0].rle"),  # runs past the end of the image
    ({"objects": [{"rle": {"size": [48, 64], "counts": "1"}}]}, 400, "objects[0].rle"),  # too short
    ({"objects": [{"rle": {"size": [48, 64], "counts": "\u00ff"}}]}, 400, "objects[0].rle"),
    ({"objects": [{"rle": {"size": [64, 48], "counts": "0"}}]}, 400, "objects[0].rle"),
    ({"objects": [{"rle": {"size": [48, 64], "counts": "P"}}]}, 400, "objects[0].rle"),  # a number cut short
    ({"format": "tiff"}, 422, "format"),
    ({"name": "../etc"}, 422, "name"),
    ({"image": {"type": "base64", "value": base64.b64encode(b"nope").decode()}}, 400, "image"),
])
def test_export_errors_name_the_field(client: TestClient, change: dict[str, Any], status: int, field: str) -> None:
    body = {"image": b64_image(synthetic_image()), "format": "coco", "objects": [], **change}
    response = client.post("/export", json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_everything_is_the_everything_provider_on_the_servers_engine(client: TestClient, engine: Any) -> None:
    from dtseg.masks import rle_to_mask
    from dtseg.pipeline import Pipeline

    image = synthetic_image(48, 64, seed=3)
    body = {"image": b64_image(image), "points_per_side": 4, "pred_iou_thresh": 0}
    answer = client.post("/everything", json=body)
    assert answer.status_code == 200, answer.text
    expected = Pipeline.from_config({"prompts": [{"everything": {"points_per_side": 4, "pred_iou_thresh": 0}}],
                                     "sinks": []}, engine=engine)(image)
    detections = answer.json()["detections"]
    assert answer.json()["prompts"] == 16 and answer.json()["config"] == "everything"
    assert len(detections) == len(expected) > 0
    for det, mask in zip(detections, expected.mask, strict=True):
        np.testing.assert_array_equal(rle_to_mask(det["rle"]), mask)
    assert [d["data"]["grid_point"] for d in detections] == expected.data["grid_point"].tolist()


@pytest.mark.parametrize(("change", "field"), [({"points_per_side": 0}, "points_per_side"),
                                               ({"points_per_side": 33}, "points_per_side"),
                                               ({"pred_iou_thresh": 1.5}, "pred_iou_thresh")])
def test_everything_options_are_checked(client: TestClient, change: dict[str, Any], field: str) -> None:
    response = client.post("/everything", json={"image": b64_image(synthetic_image()), **change})
    assert response.status_code == 422 and response.json()["field"] == field, response.text
