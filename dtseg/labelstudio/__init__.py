"""Label Studio ML backend: label configs, task images and regions in Label Studio's formats.

``dtseg serve`` answers Label Studio under ``/labelstudio`` (``dtseg.server.labelstudio_routes``);
this package holds what does not depend on HTTP: which tags a label config has
(``label_config``), where a task's image is read from (``task_images``), annotator clicks to
prompts and masks to regions (``regions``), and the backend itself (``backend``).
"""
