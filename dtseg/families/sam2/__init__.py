"""The ``sam2.1`` family: Meta's SAM 2.1 (Hiera), its fast encoder and its memory tracker for video."""
