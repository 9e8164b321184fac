"""Installed distributions as ``importlib.metadata`` sees them, for tests of plugin discovery."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def fake_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """An installed distribution in folder ``site`` (on ``sys.path``): a ``.dist-info`` folder with
    ``entry_points`` (name -> module) in dtseg's group."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    write(info / "entry_points.txt", f"[dtseg]\n{lines}\n")
