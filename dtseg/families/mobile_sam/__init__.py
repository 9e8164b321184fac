"""The ``mobile_sam`` family: SAM's decoder behind ultralytics' TinyViT encoder."""
