"""The embedding cache's tiers: what a segment-by-image_id costs from each, and Ray's overhead.

Part 1, per model (random weights: timing only): embed an image once through engine A (Redis
and disk tiers), then ``segment_image(image_id=...)`` with one point from
* engine A itself (a first-tier hit),
* engine B, as another process would be: the same Redis, an empty first tier each time (a Redis hit),
* engine C: the same folder, an empty first tier each time (a disk hit),
* and the re-embed that every miss costs without tiers;
plus the bytes one embedding takes in Redis and on disk. Starts its own ``redis-server``.

Part 2: ``dtseg segment`` on a folder of N images, locally and with ``--ray`` on this machine.

Run: ``.venv/bin/python bench/cache.py [--models vit_b] [--images 6] [--ray-model tiny]``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, print_table

from dtseg import SamEngine
from dtseg.config import CacheConfig
from dtseg.engine.checkpoints import RandomWeightsWarning


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench/cache.py needs redis-server (apt-get install -y redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def engine(model: str, **cache: object) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", cache_tiers=CacheConfig(**cache) if cache else None)


def tiers(model: str, url: str, folder: Path, repeat: int) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    prompt = {"point_coords": [[320, 240]], "point_labels": [1]}
    a = engine(model, redis_url=url, dir=str(folder))
    a.embed_image(image, "bench")
    b, c, plain = engine(model, redis_url=url), engine(model, dir=str(folder)), engine(model)

    def from_tier(e: SamEngine) -> None:
        e.embeddings.clear()
        e.segment_image(image_id="bench", **prompt)

    def re_embed() -> None:
        plain.embeddings.clear()
        plain.segment_image(image, **prompt)

    def fetch(e: SamEngine, clear: bool = True) -> None:
        if clear:
            e.embeddings.clear()
        assert e.embeddings.get(("", "bench")) is not None

    tier1 = best_of(lambda: a.segment_image(image_id="bench", **prompt), repeat)
    redis_hit, disk_hit = best_of(lambda: from_tier(b), repeat), best_of(lambda: from_tier(c), repeat)
    fetches = [best_of(lambda: fetch(a, False), repeat), best_of(lambda: fetch(b), repeat),
               best_of(lambda: fetch(c), repeat)]
    start = time.perf_counter()
    re_embed()
    embed = time.perf_counter() - start  # once: seconds on a CPU
    assert b.encoder_calls == 0 and c.encoder_calls == 0
    stored = sum(p.stat().st_size for p in folder.rglob("embedding-*"))
    return [(model, "first tier (memory)", tier1 * 1000, fetches[0] * 1000, a.embeddings.stats().bytes),
            (model, "Redis", redis_hit * 1000, fetches[1] * 1000, stored),
            (model, "disk", disk_hit * 1000, fetches[2] * 1000, stored),
            (model, "re-embed (no tiers)", embed * 1000, embed * 1000, "-")]


def folder_runs(model: str, n: int, work: Path) -> list[tuple[object, ...]]:
    from dtseg.cli import main

    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        cv2.imwrite(str(images / f"im{i}.png"), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    common = [str(images), "--config", str(Path(__file__).parents[1] / "configs" / "points.yaml"),
              "--set", f"sam.model={model}", "--set", "sam.checkpoint=random", "--device", "cpu",
              "--set", "sinks=[json, coco]", "--set", "prompts.points.objects=[{points: [[320, 240]]}]"]
    rows = []
    for name, extra in (("local", []), ("--ray (local instance)", ["--ray"])):
        start = time.perf_counter()
        code = main(["segment", *common, "--out", str(work / ("ray" if extra else "local")), *extra])
        rows.append((f"{n} images, {model}", name, time.perf_counter() - start, code))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["vit_b"])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--ray-model", default="tiny", help="model of the folder runs (their overhead is the point)")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows: list[tuple[object, ...]] = []
        with redis_server(work) as url:
            for model in args.models:
                rows += tiers(model, url, work / f"disk-{model}", args.repeat)
        print_table("segment_image by image_id, 1 point, 640x480: where the embedding comes from",
                    ["model", "embedding from", "segment ms (best)", "of which fetch ms", "bytes per embedding"],
                    rows)
        runs = folder_runs(args.ray_model, args.images, work)
        print_table("dtseg segment on a folder, same machine", ["run", "how", "seconds (incl. start)", "exit"], runs)


if __name__ == "__main__":
    main()
