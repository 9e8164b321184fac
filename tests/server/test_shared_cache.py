"""Several ``dtseg serve`` processes sharing one real redis-server: the seed flow across them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.server.live import serve, servers
from tests.server.server_helpers import b64_image, synthetic_image

KEY = "shared-key"
POINT = {"point_coords": [[20, 18]], "point_labels": [1]}


def write_config(folder: Path, checkpoint: Path, redis_url: str) -> str:
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump({"sam": {"model": "tiny", "checkpoint": str(checkpoint), "device": "cpu"},
                                    "cache": {"redis_url": redis_url, "ttl_s": 600},
                                    "server": {"api_keys": [KEY]}}))
    return str(path)


def info(base_url: str) -> dict:
    return requests.get(f"{base_url}/info", params={"api_key": KEY}, timeout=30).json()


def test_two_servers_serve_the_seed_flow_across_each_other(tmp_path, tiny_checkpoint, redis_server):
    config = write_config(tmp_path, tiny_checkpoint, redis_server.url)
    with servers(config, 2) as started:
        one, two = (served.url for served in started)
        embed = requests.post(f"{one}/sam/embed_image", params={"api_key": KEY},
                              json={"image": b64_image(synthetic_image()), "image_id": "seed"}, timeout=60)
        assert embed.status_code == 200, embed.text
        first = requests.post(f"{two}/sam/segment_image", params={"api_key": KEY},
                              json={"image_id": "seed", "format": "binary", **POINT}, timeout=60)
        assert first.status_code == 200, first.text
        refined = requests.post(f"{one}/sam/segment_image", params={"api_key": KEY},  # logits made by `two`
                                json={"image_id": "seed", "use_mask_input_cache": True, **POINT}, timeout=60)
        assert refined.status_code == 200, refined.text
        assert (info(one)["encoder_calls"], info(two)["encoder_calls"]) == (1, 0)
        assert info(two)["cache_tiers"]["redis_hits"] == 1
        redis_server.stop()  # Redis gone: both keep serving from what they hold and what they embed
        for base in (one, two):
            again = requests.post(f"{base}/sam/segment_image", params={"api_key": KEY},
                                  json={"image": b64_image(synthetic_image(seed=5)), **POINT}, timeout=60)
            assert again.status_code == 200, again.text
        assert requests.post(f"{two}/sam/segment_image", params={"api_key": KEY},
                             json={"image_id": "seed", **POINT}, timeout=60).status_code == 200


def test_workers_share_embeddings(tmp_path, tiny_checkpoint, redis_server):
    """``--workers 2``: whichever worker each request reaches, every image_id is known."""
    config = write_config(tmp_path, tiny_checkpoint, redis_server.url)
    with serve(config, "--workers", "2", timeout_s=180) as (base, _):
        for i in range(6):
            with requests.Session() as embedder:  # a new connection each time: any worker may answer
                assert embedder.post(f"{base}/sam/embed_image", params={"api_key": KEY},
                                     json={"image": b64_image(synthetic_image(seed=i)), "image_id": f"w{i}"},
                                     timeout=60).status_code == 200
        for i in range(6):
            with requests.Session() as segmenter:
                response = segmenter.post(f"{base}/sam/segment_image", params={"api_key": KEY},
                                          json={"image_id": f"w{i}", **POINT}, timeout=60)
                assert response.status_code == 200, response.text


def test_serve_refuses_to_start_without_its_redis(tmp_path, tiny_checkpoint, redis_server):
    config = write_config(tmp_path, tiny_checkpoint, redis_server.url)
    redis_server.stop()
    runs = [subprocess.Popen([sys.executable, "-m", "dtseg.cli.serve", "--config", config, "--workers", workers,
                              "--port", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for workers in ("1", "2")]  # together: their imports overlap
    try:
        for run in runs:
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 2 and f"cannot reach Redis at {redis_server.url}" in stderr, stderr
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
