"""HTTP server: Roboflow Inference-compatible SAM routes around a ``SamEngine`` (``dtseg serve``)."""

from dtseg.server.app import app_from_config, create_app
from dtseg.server.config import ServeConfig, ServerConfig, load_serve_config

__all__ = ["ServeConfig", "ServerConfig", "app_from_config", "create_app", "load_serve_config"]
