"""``dtseg serve``: the Roboflow Inference-compatible SAM HTTP server (uvicorn)."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dtseg.cli.common import ALLOW_RANDOM_HELP, checkpoint_argument, fail
from dtseg.errors import DtsegError

WORKER_STARTUP_S = 300  # seconds a worker may take to load the model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve SAM over HTTP (Roboflow Inference-compatible /sam routes)",
        description="Serve SAM over HTTP with Roboflow Inference's /sam/embed_image and /sam/segment_image "
                    "shapes, plus /segment pipelines. API docs at /docs; an interactive page (click to segment, "
                    "draw zones, export) at /.")
    parser.add_argument("-c", "--config", metavar="FILE", help="YAML with sam: and server: sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. sam.model=vit_h or server.max_body_mb=32 (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9001, help="port (default 9001, Roboflow's)")
    parser.add_argument("--sam-checkpoint", metavar="PATH", help="SAM weights file (sets sam.checkpoint)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (sets sam.device)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"],
                        help="SAM precision (sets sam.dtype; default auto: bf16 where the device runs it natively)")
    parser.add_argument("--allow-random", action="store_true",
                        help=ALLOW_RANDOM_HELP + "; also sets server.allow_random for /segment's detectors")
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="let image URLs reach loopback/private/link-local addresses "
                             "(server.url_fetch.allow_private)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (default 1); each holds its own model and in-process "
                             "embedding cache: with cache.redis_url they share embeddings through Redis, "
                             "without it an image_id embedded by one worker is unknown to the others")
    parser.add_argument("--redis-url", metavar="URL", help="shared embedding cache, e.g. redis://127.0.0.1:6379/0 "
                                                           "(sets cache.redis_url)")
    parser.add_argument("--cache-dir", metavar="DIR", help="persistent embedding cache folder (sets cache.dir)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    if args.sam_checkpoint:
        items.append("sam.checkpoint=" + json.dumps(checkpoint_argument(args.sam_checkpoint)))
    if args.device:
        items.append("sam.device=" + json.dumps(args.device))
    if getattr(args, "redis_url", None):
        items.append("cache.redis_url=" + json.dumps(args.redis_url))
    if getattr(args, "cache_dir", None):
        items.append("cache.dir=" + json.dumps(str(Path(args.cache_dir).resolve())))
    if getattr(args, "dtype", None):
        items.append("sam.dtype=" + args.dtype)
    if args.allow_private_urls:
        items.append("server.url_fetch.allow_private=true")
    if getattr(args, "allow_random", False):
        items.append("server.allow_random=true")
    return items


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dtseg.cache.tiers import build_tiers
    from dtseg.server.app import app_from_config
    from dtseg.server.config import load_serve_config
    from dtseg.server.factory import CONFIG_ENV
    from dtseg.server.transport import uvicorn_options

    if args.workers < 1:
        print("dtseg: error: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        config = load_serve_config(args.config, _overrides(args))  # raises for a missing --sam-checkpoint
        if args.allow_random:  # decided here, once: every worker loads the same
            config = config.random_if_missing()
        if args.workers > 1 and config.cache.redis_url:
            build_tiers(config.cache)  # Redis unreachable: say so once, before starting the workers
        # the process is dtseg's: sam.keep_heap left null keeps freed memory in the heap
        app = app_from_config(config, keep_heap_default=True) if args.workers == 1 else None
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    url = f"http://{args.host}:{args.port}"
    if app is not None:
        engines = app.state.services.engines.values()
        model = ", ".join(e.summary() for e in dict.fromkeys(engines))  # an engine serving two keys once
    else:
        name = config.sam.model if isinstance(config.sam.model, str) else "custom"
        model = f"{name} (loaded by each of {args.workers} workers)"
    keys = config.server.effective_api_keys()
    auth = f"on ({len(keys)} keys)" if keys else "off"
    print(f"dtseg serve: {url}  model {model}  auth {auth}  docs {url}/docs", flush=True)
    print(f"dtseg serve: open {url}/ in a browser to click, segment, draw zones and export", flush=True)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (server.shutdown_grace_s), then re-raises the
    # signal: SIGTERM ends the command with status 0 (a clean stop), SIGINT with 130 (KeyboardInterrupt,
    # in main). Handlers still running at the end of the grace end the process with status 0.
    signal.signal(signal.SIGTERM, _stop)
    # uvicorn's h11 protocol with a header deadline, keep-alive and shutdown grace from server:,
    # and API keys kept out of the access log (dtseg/server/transport.py)
    options = uvicorn_options(config.server, args.log_level)
    if app is not None:
        uvicorn.run(app, host=args.host, port=args.port, **options)
    else:
        os.environ[CONFIG_ENV] = config.model_dump_json()
        # each worker imports torch and loads the model before it answers uvicorn's health pings:
        # far longer than uvicorn's 5 s default on a busy machine, which then kills it over and over
        health: dict[str, Any] = {"timeout_worker_healthcheck": WORKER_STARTUP_S} if "timeout_worker_healthcheck" in \
            inspect.signature(uvicorn.run).parameters else {}
        uvicorn.run("dtseg.server.factory:build", factory=True, host=args.host, port=args.port,
                    workers=args.workers, **options, **health)
    print("dtseg serve: stopped", flush=True)
    return 0


def _stop(signum: int, frame: object) -> None:
    print("dtseg serve: stopped", flush=True)
    raise SystemExit(0)


if __name__ == "__main__":  # ``python -m dtseg.cli.serve``: the same command without the other subcommands
    _parser = argparse.ArgumentParser(prog="dtseg")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["serve", *sys.argv[1:]])
    sys.exit(_args.run(_args))
