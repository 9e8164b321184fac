"""Test plugins, loadable in-process (``import``) or with ``--plugins-dir tests/video/plugins``."""
