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
  (``name`` is the image's file stem), ``close(self) -> None`` once at the end. Optional class
  attributes say more (``dtseg.contracts.SinkTraits``, defaults in brackets): ``per_run``
  (``False``; ``True``: one output for the whole run, written at ``close()``, like ``coco``),
  ``needs_pixels`` (``True``; ``False``: ``write`` reads only ``frame.shape``), ``takes_writer``
  (``False``; ``True``: the second argument may be a ``dtseg.contracts.Writer`` instead of a
  folder, and every file goes through its ``write(path, data)``: then ``--skip-existing``
  checks those files, and the server can answer with them from memory).
* a model family: a subclass of ``dtseg.families.LoadedModel`` (an instance is one loaded model:
  its network and the family's encode/decode rules) whose class attributes declare the family:
  ``family`` (its name, the one it is registered under), ``capabilities``
  (``dtseg.families.Capabilities``: prompt kinds, lineage, video memory), ``models`` (its
  ``OfficialModel`` checkpoint rows), ``test_models`` (test-size model name -> architecture,
  random weights only) and its input geometry (``input_length``, ``mask_length``, ``stretch``,
  ...). Its model names are what ``sam.model`` and ``SamEngine.load`` accept.
* a route family (``dtseg serve``): a ``dtseg.server.families.RouteFamily``, an instance, not a
  class: its ``APIRouter`` (one routes module, beside one schemas module) and the engine it
  serves (``EngineNeed``: config key and ``Capabilities.lineage``). See ``docs/server.md``.

Hooks are called by keyword, once per plugin, when ``dtseg.plugins.Registry.collect`` builds
the registry (so each class's origin is known): ``impl(register=...)``. A name registered twice
is an error naming both plugins. See ``docs/plugins.md`` for a complete example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from dtseg.server.families import RouteFamily

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


#: ``register(name, family)``: ``name`` is a word naming the route family (``sam2``, ``labelstudio``).
RegisterRouteFamily = Callable[[str, "RouteFamily"], None]


@hookspec
def dtseg_register_route_families(register: RegisterRouteFamily) -> None:
    """Register the server's route families: call ``register(name, RouteFamily(router, need))``
    once per family (``dtseg.server.families``). The built-in ones (``/sam``, ``/sam2``,
    ``/segment``, the page, ``/labelstudio``, ``/info``) register through this hook too.

    Called when ``dtseg serve`` (``dtseg.server.create_app``) builds an app; results are ignored.
    """
