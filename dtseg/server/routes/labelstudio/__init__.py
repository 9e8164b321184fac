"""``/labelstudio``: dtseg as a Label Studio ML backend."""
