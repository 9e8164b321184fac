"""````/healthz```` and ````/info````: the server's own state."""
