"""``import dtseg`` and ``dtseg --help`` stay light: torch, segment_anything, ultralytics and
supervision load only when a command needs them (they took ~6 s before anything was printed)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "segment_anything", "ultralytics", "supervision")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after(body: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_import_dtseg_does_not_import_torch() -> None:
    assert _heavy_after("import dtseg; dtseg.DtsegError; dtseg.__version__") == []


def test_help_of_every_command_does_not_import_torch() -> None:
    body = """
from dtseg.cli import main
for argv in (["--help"], ["segment", "--help"], ["video", "--help"], ["serve", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
"""
    assert _heavy_after(body) == []


def test_the_lazy_names_still_import() -> None:
    import dtseg
    from dtseg.engine import SamEngine

    assert dtseg.SamEngine is SamEngine and "Pipeline" in dir(dtseg)
    from dtseg import Pipeline, Prompts  # noqa: F401

    try:
        dtseg.NoSuchThing  # noqa: B018 - the module's __getattr__ must raise
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
