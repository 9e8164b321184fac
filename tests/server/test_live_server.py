"""The real ``dtseg serve`` process on a free loopback port: a client written exactly in the
style of Roboflow's guide (requests, ?api_key=), then 8 concurrent clients."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from tests.server.live import serving
from tests.server.server_helpers import png_bytes, synthetic_image

API_KEY = "live-test-key"
CLIENTS, REQUESTS_PER_CLIENT = 8, 25


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m dtseg.cli.serve`` (the ``dtseg serve`` command); always killed at the end."""
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(yaml.safe_dump({"sam": {"model": "tiny", "checkpoint": str(tiny_checkpoint), "device": "cpu"},
                                      "server": {"api_keys": [API_KEY]}}))
    with serving(config, timeout_s=90) as served:
        assert any(served.url in line and "tiny" in line for line in served.output), served.output
        yield served.url
        assert served.process.poll() is None, "the server died during the tests"
        assert served.stop() == 0, "clean shutdown on SIGTERM"
        assert "dtseg serve: stopped" in "".join(served.output)


def encoder_calls(base_url: str) -> int:
    return requests.get(f"{base_url}/info", params={"api_key": API_KEY}, timeout=10).json()["encoder_calls"]


def test_roboflow_guide_client(server: str) -> None:
    image = synthetic_image(480, 640)
    image_base64 = base64.b64encode(png_bytes(image)).decode("utf-8")
    # -- the guide's code, with base_url pointing at dtseg serve -----------------------------
    base_url = server
    api_key = API_KEY
    infer_payload = {
        "image": {"type": "base64", "value": image_base64},
        "image_id": "example_image_id",
    }
    res = requests.post(f"{base_url}/sam/embed_image?api_key={api_key}", json=infer_payload)
    embeddings = res.json()["embeddings"]
    after_embed = encoder_calls(base_url)
    infer_payload = {
        "point_coords": [[380, 350]],
        "point_labels": [1],
        "image_id": "example_image_id",
    }
    res = requests.post(f"{base_url}/sam/segment_image?api_key={api_key}", json=infer_payload)
    masks = res.json()["masks"]
    # -----------------------------------------------------------------------------------
    assert np.shape(embeddings) == (1, 256, 64, 64)
    assert after_embed == 1
    assert len(masks) == 1 and all(0 <= x < 640 and 0 <= y < 480 for x, y in masks[0])
    again = requests.post(f"{base_url}/sam/segment_image?api_key={api_key}", json=infer_payload)
    assert again.json()["masks"] == masks
    assert encoder_calls(base_url) == after_embed  # segments by image_id never touch the encoder
    no_key = requests.post(f"{base_url}/sam/segment_image", json=infer_payload)
    assert no_key.status_code == 401 and "api_key" in no_key.json()["message"]
    bearer = requests.post(f"{base_url}/sam/segment_image", json=infer_payload,
                           headers={"Authorization": f"Bearer {api_key}"})
    assert bearer.status_code == 200


def test_concurrent_clients(server: str) -> None:
    """8 clients x 25 requests of five kinds at once; every answer checked; the process lives."""
    url = f"{server}/sam/segment_image?api_key={API_KEY}"
    image = synthetic_image(48, 64, seed=3)
    setup = requests.post(f"{server}/sam/embed_image?api_key={API_KEY}",
                          json={"image": {"type": "base64", "value": base64.b64encode(png_bytes(image)).decode()},
                                "image_id": "shared", "format": "binary"})
    assert setup.status_code == 200
    prompt = {"image_id": "shared", "point_coords": [[20, 18]], "point_labels": [1]}
    reference = requests.post(url, json=prompt).json()["masks"]
    other = base64.b64encode(png_bytes(synthetic_image(48, 64, seed=4))).decode()
    failures: list[str] = []

    def client(index: int) -> None:
        with requests.Session() as session:
            for i in range(REQUESTS_PER_CLIENT):
                kind = i % 8
                try:
                    if kind == 0:
                        r = session.post(url, json=prompt, timeout=120)
                        ok = r.status_code == 200 and r.json()["masks"] == reference
                    elif kind == 1 and index == 0 and i == 1:  # one embed of a new image among the segments
                        r = session.post(f"{server}/sam/embed_image?api_key={API_KEY}", timeout=120,
                                         json={"image": {"type": "base64", "value": other}, "format": "binary"})
                        ok = r.status_code == 200 and len(r.content) > 4 * 256 * 64 * 64
                    elif kind in (1, 5):
                        r = session.get(f"{server}/healthz", timeout=60)
                        ok = r.status_code == 200 and r.json() == {"status": "ok"}
                    elif kind in (2, 6):
                        r = session.post(url, json={**prompt, "point_labels": [7]}, timeout=60)
                        ok = r.status_code == 400 and r.json()["field"] == "point_labels"
                    elif kind in (3, 7):
                        r = session.post(url, json={**prompt, "image_id": f"missing-{index}-{i}"}, timeout=60)
                        ok = r.status_code == 404 and r.json()["code"] == "image_not_embedded"
                    else:
                        r = session.get(f"{server}/info", params={"api_key": API_KEY}, timeout=60)
                        ok = r.status_code == 200 and r.json()["model"] == "tiny"
                except requests.RequestException as exc:
                    failures.append(f"client {index} request {i}: {exc!r}")
                    continue
                if not ok:
                    failures.append(f"client {index} request {i} (kind {kind}): {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert not failures, failures[:5]
    assert requests.get(f"{server}/healthz", timeout=10).ok
