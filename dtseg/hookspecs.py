"""pluggy hook specifications. Plugins implement these with ``@hookimpl``.

Hooks only *register* classes; the work is done by ordinary typed classes:

* a prompt provider: ``Config`` (a ``dtseg.config.StrictModel``; optional, default: no options),
  ``__init__(self, config)``,
  ``__call__(self, frame: np.ndarray (H, W, 3) RGB uint8, prompts: Prompts | None) -> Prompts``
  (``prompts`` is the previous stage's output; ``None`` for the first stage);
  optionally ``after_segment(self, frame, detections) -> sv.Detections`` to filter or label
  the segmented result (``detections.mask`` ``(N, H, W)`` bool), called in stage order
  (with ``batch_size > 1`` every image's ``__call__`` runs before any ``after_segment``, and
  a retried image is called again: keep no per-image state between the two);
  optionally ``random_weights: bool`` (labels the output as meaningless) and a classmethod
  ``random_fallback(config) -> config`` that ``--allow-random`` uses when ``__init__`` raises
  ``CheckpointNotFoundError``.
* a sink: ``Config``, ``__init__(self, config, out_dir: Path)``,
  ``write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None`` per image
  (``name`` is the image's file stem), ``close(self) -> None`` once at the end.
* a model family: a subclass of ``dtseg.families.LoadedModel`` (an instance is one loaded model:
  its network and the family's encode/decode rules) whose class attributes declare the family:
  ``family`` (its name, the one it is registered under), ``capabilities``
  (``dtseg.families.Capabilities``: prompt kinds, lineage, video memory), ``models`` (its
  ``OfficialModel`` checkpoint rows), ``test_models`` (test-size model name -> architecture,
  random weights only) and its input geometry (``input_length``, ``mask_length``, ``stretch``,
  ...). Its model names are what ``sam.model`` and ``SamEngine.load`` accept.

Hooks are called by keyword, once per plugin, when ``dtseg.plugins.Registry.collect`` builds
the registry (so each class's origin is known): ``impl(register=...)``. A name registered twice
is an error naming both plugins. See ``docs/plugins.md`` for a complete example.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "dtseg"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, cls)``: ``name`` is what configs use (``prompts: [{name: {...}}]``).
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


@hookspec
def dtseg_register_model_families(register: Register) -> None:
    """Register model families: call ``register(name, cls)`` once per family, ``cls`` a
    ``dtseg.families.LoadedModel`` subclass whose ``family`` is ``name``.

    Called once for every plugin when the plugin manager is built; results are ignored. A model
    name that two families declare is an error naming both.
    """
