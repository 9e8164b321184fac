"""Label Studio's formats: label configs (``label_config``), annotator regions to prompts and masks
to regions (``regions``), and the ``server.labelstudio`` settings (``settings``).

``dtseg serve`` answers Label Studio under ``/labelstudio``: ``dtseg.server.routes.labelstudio.routes``
(the protocol), ``labelstudio_backend`` (tasks -> predictions) and ``labelstudio_images`` (task
image URLs -> bytes).
"""
