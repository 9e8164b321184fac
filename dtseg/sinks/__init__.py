"""Built-in sinks, registered through the same hook a third-party plugin uses.

=============  =====================================================================
``annotated``  the image with supervision annotators (mask, box, label, ...)
``masks_png``  one 8-bit PNG per object, or one 16-bit instance-id PNG per image
``json``       one JSON per image: metadata, prompt, polygons (holes kept), COCO RLE
``coco``       one COCO dataset JSON for the run (RLE segmentations), written at close
``yolo_seg``   an ultralytics segmentation dataset: images, one label .txt per image, data.yaml
=============  =====================================================================
"""

from __future__ import annotations

from dtseg.hookspecs import Register, hookimpl
from dtseg.sinks.annotated import AnnotatedSink
from dtseg.sinks.coco import CocoSink
from dtseg.sinks.json_sink import JsonSink
from dtseg.sinks.masks_png import MasksPngSink
from dtseg.sinks.yolo_seg import YoloSegSink

BUILTIN_SINKS: dict[str, type] = {
    "annotated": AnnotatedSink,
    "masks_png": MasksPngSink,
    "json": JsonSink,
    "coco": CocoSink,
    "yolo_seg": YoloSegSink,
}

__all__ = ["BUILTIN_SINKS", "AnnotatedSink", "CocoSink", "JsonSink", "MasksPngSink", "YoloSegSink"]


@hookimpl
def dtseg_register_sinks(register: Register) -> None:
    for name, cls in BUILTIN_SINKS.items():
        register(name, cls)
