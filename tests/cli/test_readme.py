"""The README's Python API blocks run as written, with only the model sizes and the photo
swapped for what runs offline here (tiny random SAM, a random ``yolov8n.yaml``, bus.jpg)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

#: what this machine has in place of the README's files; nothing else is changed
SWAPS = {
    'SamEngine.load("vit_b")': 'SamEngine.load("tiny", "random", device="cpu")',
    'YOLO("yolov8n.pt")': 'YOLO("yolov8n.yaml")',
    'Pipeline.from_config("configs/default.yaml", allow_random=True)':
        'Pipeline.from_config("configs/default.yaml", ["sam.model=tiny", "sam.device=cpu", '
        '"prompts.yolo.imgsz=160"], allow_random=True)',
}


def python_api_blocks() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.filterwarnings("ignore::dtseg.errors.RandomWeightsWarning")
def test_python_api_blocks_run_as_written(bus_jpg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    monkeypatch.setenv("DTSEG_HOME", str(ROOT / ".no-such-dtseg-home"))  # no cached SAM weights: allow_random
    blocks = python_api_blocks()
    assert len(blocks) == 2
    code = "\n".join(blocks)
    for old, new in SWAPS.items():
        assert old in code, old
        code = code.replace(old, new)
    code = code.replace('"photo.jpg"', repr(str(bus_jpg)))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
    assert namespace["result"].masks.shape == (2, 1, 1080, 810)
    assert namespace["detections"].metadata["random_weights"]  # allow_random really stood in
    assert namespace["pipeline"].random_parts == ["sam", "yolo"]


def test_docs_speak_of_the_project_not_of_its_making() -> None:
    """No pointers to files outside the repository (a design note that does not ship) and no
    talk of the sessions or issues the docs were written in."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [f"{page.name}:{n}: {line.strip()}" for page in pages
             for n, line in enumerate(page.read_text().splitlines(), 1)
             if re.search(r"DESIGN\.md|\bsessions?\b|\bthe issue\b", line, re.I)]
    assert not found, "\n".join(found)
