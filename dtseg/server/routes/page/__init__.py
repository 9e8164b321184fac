"""The interactive page at ``/`` with its static files and helpers (``/fetch_image``, ``/export``, ``/everything``)."""
