"""Roboflow Inference's SAM 3 routes, ``/sam3/*``: visual and concept prompts on a SAM 3 model."""
