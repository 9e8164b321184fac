"""SAM 3: Meta's network built from its spec and run on the CPU."""
