"""The embedding cache: the byte-bounded LRU (``lru``), its Redis and folder tiers, and the bytes
they keep (``serialize``)."""
