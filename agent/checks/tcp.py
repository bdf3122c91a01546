"""TCP checks: resolve the host, open a connection, close it at once (no data sent)."""

from __future__ import annotations

import asyncio
import os
import socket

from agent.checks.model import CheckResult, PhaseTimer
from kipu.config.checks import is_ip_address, split_host_port


async def run_tcp(address: str, deadline: float) -> CheckResult:
    """Connect to ``HOST:PORT`` within `deadline` seconds; never raises for a failing peer.

    Every address the name resolves to is tried in turn, as a client would.
    """
    host, port = split_host_port(address)
    timer = PhaseTimer()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(deadline):
            if is_ip_address(host):
                addresses = [host]
            else:
                timer.start("resolve")
                try:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except socket.gaierror as err:
                    return CheckResult("dns", timer.close(), f"{host}: {err.strerror or err}")
                timer.end("resolve")
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            timer.start("connect")
            error: OSError | None = None
            for ip in addresses:
                try:
                    transport, _ = await loop.create_connection(asyncio.Protocol, ip, port)
                except OSError as err:
                    error = err
                    continue
                transport.close()
                return CheckResult("ok", timer.close(), f"connected to {ip} port {port}")
    except TimeoutError:
        return CheckResult("timeout", timer.close(), f"no connection within {deadline:g}s")
    reason = _reason(error) if error is not None else "no address"
    return CheckResult("connect", timer.close(), f"{address}: {reason}")


def _reason(error: OSError) -> str:
    # asyncio's message ("Connect call failed") hides the reason that errno tells.
    return os.strerror(error.errno) if error.errno else str(error)
