"""Where a Label Studio task's image comes from: a local folder, Label Studio itself, or the web.

Task URLs, in the order they are tried:

- a prefix of ``local_dirs`` (e.g. ``/data/local-files/?d=`` -> ``/srv/images``): read from that
  folder (the rest of the URL, percent-decoded, must stay inside it). Label Studio sends its own
  URLs with its address in front: prefixes starting with ``/`` match them too;
- ``data:`` URLs: base64;
- paths starting with ``/`` (``/data/upload/...``, ``/data/local-files/?d=...``) and absolute
  URLs on Label Studio's own address: fetched from Label Studio with its API token. The
  configured address (``labelstudio.url``) is trusted; the hostname that ``/setup`` sends is
  fetched under the ``url_fetch`` guards like any other URL;
- other ``http(s)`` URLs: fetched under the ``url_fetch`` guards, without the token.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from dtseg.errors import InputError
from dtseg.labelstudio.settings import Connection, LabelStudioConfig
from dtseg.server.common.images import decode_base64, fetch_url
from dtseg.server.config import UrlFetchConfig


def read_task_image(url: object, settings: LabelStudioConfig, fetch: UrlFetchConfig,
                    setup: Connection | None = None, field: str = "task.data") -> bytes:
    """The encoded bytes of a task's image ``url``; every failure raises ``InputError`` naming ``field``."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(field, f"expected an image URL, got {url!r}")
    url = url.strip()
    setup = setup or Connection()
    configured = settings.effective_url()
    base = (configured or setup.hostname or "").rstrip("/")
    token = settings.effective_token() or setup.access_token
    local = url[len(base):] if base and url.startswith(base + "/") else url  # Label Studio's URLs, as paths
    for prefix, folder in settings.local_dirs.items():
        if local.startswith(prefix) or url.startswith(prefix):
            rest = local[len(prefix):] if local.startswith(prefix) else url[len(prefix):]
            return _read_local(folder, unquote(rest), field)
    if url.lower().startswith("data:"):
        return decode_base64(url, field)
    if url.startswith("/") and not url.startswith("//"):
        if not base:
            raise InputError(field, f"{url!r} is a Label Studio path, and Label Studio's address is unknown: set "
                                    "server.labelstudio.url (or $LABEL_STUDIO_URL), or map it with "
                                    "server.labelstudio.local_dirs")
        url = base + url
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(field, f"cannot read {scheme or 'scheme-less'} URL {url!r}: dtseg reads http(s), data: "
                                "and Label Studio URLs (map others with server.labelstudio.local_dirs)")
    on_label_studio = bool(base) and _same_origin(url, base)
    headers = {"Authorization": f"Token {token}"} if on_label_studio and token else None
    if on_label_studio and base == (configured or "").rstrip("/"):
        fetch = fetch.model_copy(update={"allow_private": True})  # the operator's own Label Studio
    return fetch_url(url, fetch, field, headers=headers)


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme.lower(), a.hostname, a.port) == (b.scheme.lower(), b.hostname, b.port)


def _read_local(folder: str, relative: str, field: str) -> bytes:
    root = Path(folder).resolve()
    path = (root / relative.lstrip("/")).resolve()
    if not path.is_relative_to(root):
        raise InputError(field, f"{relative!r} leaves the folder {folder!r}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(field, f"cannot read {relative!r} in {folder!r}: {exc.strerror or exc}") from None
