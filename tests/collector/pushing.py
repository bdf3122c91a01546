"""Pushing to a collector process as a site would, for the process-level tests: plain
urllib, so that synchronous tests can drive real processes without an event loop."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

from kipu.remote_write.codec import Series, encode, normalise_labels

IDENTITY = ("site_id", "project", "region")


def post_write(
    url: str,
    token: str | None,
    body: bytes,
    *,
    context: ssl.SSLContext | None = None,
    timeout: float = 10,
) -> tuple[int, str]:
    """POST one remote-write body to `url` with a site's bearer token; (status, text)."""
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")


def now_ms() -> int:
    return int(time.time() * 1000)


def gauge_body(name: str, value: float = 1.0, **labels: str) -> bytes:
    """One sample of `name` stamped now."""
    return encode({normalise_labels({"__name__": name, **labels}): [(now_ms(), value)]})


def with_identity(series: Series, site_id: str, project: str, region: str) -> Series:
    """`series` as the collector forwards it for that site."""
    kept = {k: v for k, v in series if k not in IDENTITY}
    return normalise_labels({**kept, "site_id": site_id, "project": project, "region": region})
