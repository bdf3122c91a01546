"""Checks of values both programs' configurations share: sites, addresses, URLs."""

from __future__ import annotations

import ipaddress
import re

SITE_ID_PATTERN = r"[a-z0-9][a-z0-9_.-]*"
"""A site's identifier (DESIGN §2)."""
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces); ValueError otherwise."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if not match:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9108 or [::1]:9108)")
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return (match.group(1) or match.group(2) or ""), port


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_problem(text: str) -> str | None:
    """Why `text` is neither an IP address nor a host name, or None when it is fine."""
    if is_ip_address(text) or (_HOSTNAME.match(text) and not text.replace(".", "").isdigit()):
        return None
    return f"{text!r} is neither an IP address nor a host name"


def listen_problem(text: str) -> str | None:
    try:
        split_host_port(text)
    except ValueError as err:
        return str(err)
    return None


def url_problem(text: str) -> str | None:
    if re.match(r"^https?://[^/\s]+", text):
        return None
    return f"{text!r} is not an http:// or https:// URL"
