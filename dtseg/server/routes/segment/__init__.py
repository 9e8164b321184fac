"""``POST /segment``: the server's pipeline configs."""
