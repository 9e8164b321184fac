"""Cached ``/sam/segment_image`` over loopback against the engine's own decode, in one run.

Starts ``dtseg serve`` (random weights: timing only) on a free 127.0.0.1 port, embeds one
image under an image_id, then times N segment_image requests by image_id (json and binary,
1 and C concurrent clients) and N in-process ``SamEngine.segment_image`` calls on the same
model and image. Prints one table. Run: ``.venv/bin/python bench/server.py [--model tiny]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import requests
import yaml

PROMPT = {"image_id": "bench", "point_coords": [[320, 240]], "point_labels": [1]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image(height: int = 480, width: int = 640) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    cv2.circle(rgb, (320, 240), 90, (230, 40, 40), -1)
    return rgb


def timed(call: Callable[[], None], n: int, concurrency: int = 1) -> tuple[float, np.ndarray]:
    """Wall time of n calls on ``concurrency`` threads, and each call's latency (seconds)."""
    def one(_: int) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = np.array(list(pool.map(one, range(n))))
    return time.perf_counter() - start, latencies


def start_server(model: str, device: str, port: int, workdir: Path) -> subprocess.Popen:
    config = workdir / "serve.yaml"
    config.write_text(yaml.safe_dump({"sam": {"model": model, "checkpoint": "random", "device": device}}))
    env = {k: v for k, v in os.environ.items() if k != "DTSEG_API_KEYS"}
    proc = subprocess.Popen([sys.executable, "-m", "dtseg.cli.serve", "--config", str(config), "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (default), vit_b, vit_l, vit_h (random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("-n", "--requests", type=int, default=15, help="requests per row (default 15)")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="clients of the concurrent row (default 4)")
    args = parser.parse_args()

    rgb = image()
    png = base64.b64encode(cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()).decode()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.model, args.device, port, Path(tmp))
        try:
            session = requests.Session()
            session.post(f"{base}/sam/embed_image", json={"image": {"type": "base64", "value": png},
                                                          "image_id": "bench", "format": "binary"}).raise_for_status()
            info = session.get(f"{base}/info").json()

            def http(fmt: str, s: requests.Session | None = None) -> Callable[[], None]:
                def call() -> None:
                    (s or requests).post(f"{base}/sam/segment_image", json={**PROMPT, "format": fmt}).raise_for_status()
                return call

            for _ in range(3):
                http("json", session)()
            rows = []
            for label, call, conc in [("HTTP segment_image json, 1 client", http("json", session), 1),
                                      ("HTTP segment_image binary, 1 client", http("binary", session), 1),
                                      (f"HTTP segment_image json, {args.concurrency} clients", http("json"),
                                       args.concurrency)]:
                rows.append((label, *timed(call, args.requests, conc)))
            calls_after = session.get(f"{base}/info").json()["encoder_calls"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    from dtseg import SamEngine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = SamEngine.load(args.model, "random", device=args.device)
    engine.embed_image(rgb, "bench")
    decode = lambda: engine.segment_image(image_id="bench", point_coords=PROMPT["point_coords"],  # noqa: E731
                                          point_labels=PROMPT["point_labels"], multimask_output=False)
    for _ in range(3):
        decode()
    rows.insert(0, ("engine.segment_image in-process (decode + masks)", *timed(decode, args.requests)))

    print(f"\nmodel {info['model']} (random weights) on {info['device']}, image 640x480, 1 point, "
          f"{args.requests} requests per row; encoder calls during the HTTP rows: {calls_after - 1}")
    print(f"{'':52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for label, wall, lat in rows:
        p50, p99 = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3
        print(f"{label:52} {len(lat) / wall:8.1f} {p50:8.1f} {p99:8.1f}")
    engine_p50 = np.percentile(rows[0][2], 50)
    http_p50 = np.percentile(rows[1][2], 50)
    print(f"HTTP overhead at p50 (json, 1 client): {(http_p50 - engine_p50) * 1e3:.1f} ms over the engine's decode")


if __name__ == "__main__":
    main()
