"""pluggy hook specifications. Plugins implement these with ``@hookimpl``.

Hooks only *register* classes; the work is done by ordinary typed classes:

* a prompt provider: ``Config`` (a pydantic model), ``__init__(self, config)``,
  ``__call__(self, frame: np.ndarray (H, W, 3) RGB uint8, prompts: Prompts | None) -> Prompts``
  (``prompts`` is the previous stage's output; ``None`` for the first stage);
  optionally ``after_segment(self, frame, detections) -> sv.Detections`` to filter or label
  the segmented result.
* a sink: ``Config``, ``__init__(self, config, out_dir: Path)``,
  ``write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None`` per image
  (``name`` is the image's file stem), ``close(self) -> None`` once at the end.

Hooks are called by keyword: ``pm.hook.dtseg_register_prompt_providers(register=...)``.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "dtseg"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, type], None]


@hookspec
def dtseg_register_prompt_providers(register: Register) -> None:
    """Register prompt-provider classes: call ``register(name, cls)`` once per provider.

    Called once for every plugin when the plugin manager is built; results are ignored.
    """


@hookspec
def dtseg_register_sinks(register: Register) -> None:
    """Register output-writer classes: call ``register(name, cls)`` once per sink.

    Called once for every plugin when the plugin manager is built; results are ignored.
    """
