"""Roboflow Inference's SAM v1 routes, ``/sam/*``."""
