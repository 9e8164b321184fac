"""Roboflow Inference's SAM 2 routes, ``/sam2/*``."""
