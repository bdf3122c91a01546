"""One way to run an aiohttp service with the signals both programs answer.

SIGTERM and SIGINT stop it cleanly; SIGHUP reloads. The handlers are in place from the
first instant: a SIGTERM while the service starts stops it once started (exit 0), a
SIGHUP then is ignored (the files are being read anyway), where the default action
would have killed the process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from kipu.config.checks import split_host_port

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


# Connections the kernel holds for us while the loop is busy. asyncio's default, 100,
# overflows when thousands of sites connect within one slow moment; the kernel then
# drops their SYNs and each waits a second for its retransmit (Linux caps this at
# net.core.somaxconn, 4096 by default).
LISTEN_BACKLOG = 4096


async def serve_app(
    app: web.Application,
    listen: str | Sequence[str],
    reload: Callable[[], Awaitable[object]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    failed: asyncio.Event | None = None,
) -> bool:
    """Run `app` on `listen` (one address or several) until a stop signal, or until
    `failed` is set (then True).

    Starting the app runs its `cleanup_ctx` (the program's own start); OSError names the
    address when it cannot listen.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    started = False
    reloads: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        if not started:
            log.info("SIGHUP while starting: the configuration is being read anyway")
            return
        task: asyncio.Task[object] = loop.create_task(reload())  # type: ignore[arg-type]
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            for address in [listen] if isinstance(listen, str) else listen:
                host, port = split_host_port(address)
                site = web.TCPSite(
                    runner, host or None, port, ssl_context=ssl_context, backlog=LISTEN_BACKLOG
                )
                try:
                    await site.start()
                except OSError as err:
                    raise OSError(f"cannot listen on {address}: {err.strerror or err}") from err
                log.info("listening on %s://%s", "https" if ssl_context else "http", address)
            started = True
            waiters = [asyncio.ensure_future(stop.wait())]
            if failed is not None:
                waiters.append(asyncio.ensure_future(failed.wait()))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            log.info("stopping")
        finally:
            await runner.cleanup()
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
    return failed is not None and failed.is_set()
