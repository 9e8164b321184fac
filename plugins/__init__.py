"""dtseg's built-in prompt providers, installed as the package ``dtseg_plugins``.

Each module is a plugin registered through the ``dtseg`` entry-point group, exactly as a third
party's would be: ``points`` (manual prompts), ``yolo`` (an ultralytics detector), ``zones``
(polygon zones) and ``everything`` (SAM's automatic mask generator: a point grid, filtered).
"""
