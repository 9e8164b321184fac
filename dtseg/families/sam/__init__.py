"""The ``sam`` family: Meta's Segment Anything (ViT-B/L/H) and its fast ViT encoder."""
