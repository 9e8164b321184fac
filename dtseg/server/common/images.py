"""Request images -> RGB uint8 arrays: base64 (data-URL prefix accepted) or http(s) URLs.

URL fetching is guarded against server-side request forgery: only http/https; every address
the host name resolves to must be globally routable (no loopback, private, link-local,
shared, reserved or multicast address) unless ``allow_private``; redirects are followed by
hand, each hop checked again, at most ``max_redirects``; the download is capped in bytes and
the whole fetch (connect, headers, body, redirects) in time. Residual risk: DNS may answer differently
between the check and the connection (rebinding); run behind an egress proxy if that matters.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np

from dtseg.errors import InputError
from dtseg.image_size import declared_size
from dtseg.io import is_url, load_image
from dtseg.server.common.deadline import Deadline
from dtseg.server.common.decode_budget import DecodeBudget
from dtseg.server.common.schemas import ImageInput
from dtseg.server.config import ServerConfig, UrlFetchConfig

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_REDIRECTS = {301, 302, 303, 307, 308}


def load_request_image(image: ImageInput, config: ServerConfig, budget: DecodeBudget, auto_orient: bool = True,
                       field: str = "image") -> np.ndarray:
    """Decode ``image`` to RGB uint8 ``(H, W, 3)``; client mistakes raise ``InputError`` naming ``field``.

    ``auto_orient`` applies EXIF orientation (when ``config.auto_orient`` too). The image's
    declared pixels are reserved from ``budget`` while it decodes.
    """
    value = image.value.strip()
    if image.type == "url" or is_url(value):
        data = fetch_url(value, config.url_fetch, f"{field}.value")
    else:
        data = decode_base64(value, f"{field}.value")
    return decode_image(data, config, budget, auto_orient, field)


def load_body_image(body: Any, config: ServerConfig, budget: DecodeBudget) -> np.ndarray:
    """A Roboflow request's ``image``, upright unless it sets ``disable_preproc_auto_orient``."""
    assert body.image is not None
    return load_request_image(body.image, config, budget, auto_orient=not body.disable_preproc_auto_orient)


def decode_image(data: bytes, config: ServerConfig, budget: DecodeBudget, auto_orient: bool = True,
                 field: str = "image") -> np.ndarray:
    """Encoded bytes -> RGB uint8 ``(H, W, 3)``: the declared size checked first, its pixels reserved
    from ``budget`` while decoding, EXIF orientation applied (``auto_orient`` and ``config.auto_orient``)."""
    size = declared_size(data)
    with budget.reserve(size[0] * size[1] if size else 0):
        return load_image(data, field, max_pixels=config.max_image_pixels,
                          auto_orient=auto_orient and config.auto_orient)


def decode_base64(value: str, field: str) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace and a data-URL prefix ignored."""
    text = _DATA_URL.sub("", value, count=1)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        altchars = b"-_" if ("-" in text or "_" in text) else None
        data = base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(field, f"not valid base64: {exc}") from None
    if not data:
        raise InputError(field, "empty image data")
    return data


def fetch_url(url: str, config: UrlFetchConfig, field: str = "image.value",
              headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` within the limits of ``config``; refusals and failures raise ``InputError``.
    ``headers`` go with the first request only (a redirect elsewhere must not carry credentials).

    ``timeout_s`` bounds the whole fetch (connect, response headers, body, every redirect): at
    the deadline a watchdog shuts the sockets down, however slowly the server dribbles bytes.
    """
    max_bytes = int(config.max_mb * (1 << 20))
    too_slow = f"fetching the image took longer than {config.timeout_s:g} s"
    with Deadline(config.timeout_s) as deadline, httpx.Client(follow_redirects=False, trust_env=False) as client:
        try:
            for _ in range(config.max_redirects + 1):
                check_url(url, config.allow_private, field)
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise InputError(field, too_slow)
                with client.stream("GET", url, timeout=remaining, headers=headers,
                                   extensions={"trace": deadline.trace}) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url, headers = urljoin(url, response.headers["location"]), None
                        continue
                    if response.status_code != 200:
                        raise InputError(field, f"GET {url} answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise InputError(field, f"image at {url} is {declared} bytes, more than {max_bytes}")
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise InputError(field, f"image at {url} is more than {max_bytes} bytes")
                        chunks.append(chunk)
                    if deadline.expired:
                        raise InputError(field, too_slow)
                    return b"".join(chunks)
        except httpx.HTTPError as exc:
            if deadline.expired or isinstance(exc, httpx.TimeoutException):  # per-operation timeouts = time left
                raise InputError(field, too_slow) from None
            raise InputError(field, f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        raise InputError(field, f"more than {config.max_redirects} redirects")


def check_url(url: str, allow_private: bool, field: str = "image.value") -> None:
    """Refuse non-http(s) URLs and, unless ``allow_private``, hosts with any non-global address."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InputError(field, f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InputError(field, f"only http and https URLs are fetched, got {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise InputError(field, "the URL has no host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise InputError(field, f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # IPv6: drop the "%zone"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise InputError(field, f"{host!r} resolves to {address}, a loopback/private/link-local or reserved "
                                    "address: refused (start the server with url_fetch.allow_private to allow it)")
