"""The collector's runtime: the write endpoint, liveness, forwarding, the HTTP API.

One event loop. Decoding and encoding of large pushes, disk work and file reads run in
worker threads; every long-running loop is supervised.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import fcntl
import gc
import logging
import ssl
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO

from aiohttp import web

from collector import metrics
from collector.auth import TokenBook
from collector.config import CollectorConfig, Maintenance, load_config, load_maintenance
from collector.forward import Forwarder, QueueDiskError, QueueFullError
from collector.ingest import Admitted, Ingest
from collector.inventory import Inventory, Site, load_inventory
from collector.ledger import METRICS as LEDGER_METRICS
from collector.ledger import SAVE_INTERVAL as LEDGER_SAVE
from collector.ledger import Ledger
from collector.liveness import STATES, Liveness
from collector.memory import WATCHED, SiteMemory
from collector.pressure import Pressure
from collector.snapshots import (
    CollectorSnapshot,
    ForwardSnapshot,
    Histogram,
    History,
    SiteView,
)
from collector.speedtest import SPEEDTEST
from collector.speedtest import install as install_speedtest
from collector.tls import TlsError, load_certificates, ssl_context
from collector.web import install as install_web
from kipu.config import ConfigError
from kipu.remote_write.client import BACKLOG_HEADER
from kipu.remote_write.codec import RemoteWriteDecodeError, compress, raw_request
from kipu.service import serve_app
from kipu.supervise import supervised
from kipu.version import __version__

log = logging.getLogger(__name__)

LOCK_FILE = "collector.lock"
TOKEN_POLL = 1.0  # seconds between looks at the token file
LIVENESS_SAVE = 2.0  # seconds between saves of the last-push times
BODY_IDLE = 30.0  # seconds a push may send nothing of its body
# CPython's default thresholds (700, 10, 10) run a young collection every 700
# allocations. At 10,000 sites a collector holds tens of thousands of objects that live
# a few milliseconds (the requests under way and their connections' buffers): many
# survive two young collections, reach the old generation, and trigger a full
# collection about every second, which walks every object of every open connection:
# 100-200 ms with the event loop stopped. Young collections 50,000 allocations apart let
# a request's objects die before they are looked at (benchmarks/collector_load.py).
GC_THRESHOLDS = (50_000, 20, 100)
# The event loop lets go of the GIL at every snappy call (cramjam releases it); worker
# threads (decompressing backlog, reading and joining the forward queue) then hold it
# up to the switch interval before the loop gets it back: 5 ms by default, each time,
# a thousand times a second under load. 1 ms keeps live pushes from queueing behind
# them (benchmarks/collector_load.py).
SWITCH_INTERVAL = 0.001
BACKLOG_BODY = 64 * 1024  # a larger push is taken for backlog (a live one is ~2 KB)
THREAD_BODY = 256 * 1024  # bodies larger than this are decoded in a worker thread
RETRY_QUEUE_FULL = 30
RETRY_DISK = 10
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class StartError(Exception):
    """The collector cannot start; the message says why."""


@dataclasses.dataclass
class IngestStats:
    samples_received: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    accepted: int = 0
    duration_counts: list[int] = dataclasses.field(
        default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1)
    )
    duration_sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.duration_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


class Collector:
    """Everything the collector runs, independent of HTTP."""

    def __init__(
        self,
        config: CollectorConfig,
        config_path: str | Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.inventory = Inventory({})
        self.tokens = TokenBook(config.state_dir)
        self.liveness = Liveness(config.state_dir, config.silent_after)
        self.ingest = Ingest(config.limits, WATCHED | LEDGER_METRICS)
        self.memory = SiteMemory()
        self.ledger = Ledger(config.state_dir)
        self.maintenance = Maintenance()
        self.forwarder = Forwarder(config.forward, config.state_dir) if config.forward else None
        self.stats = IngestStats()
        self.pressure = Pressure()
        self.ssl_context: ssl.SSLContext | None = None
        self._lock: IO[bytes] | None = None
        self._reload_lock = asyncio.Lock()
        # Large pushes are decoded and compressed here, one at a time: they never queue
        # ahead of the group commit or the forward lanes in asyncio's shared pool.
        self._large = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-push")

    # -- lifecycle

    async def start(self) -> None:
        """Take the state folder, load inventory, tokens and last pushes, open the queue."""
        await asyncio.to_thread(self._take_state_dir)
        try:
            try:
                self.inventory = await asyncio.to_thread(load_inventory, self.config.inventory)
            except ConfigError as err:
                raise StartError(f"invalid inventory:\n{err}") from err
            for warning in self.inventory.warnings:
                log.warning("inventory: %s", warning)
            await asyncio.to_thread(self.tokens.refresh)
            if self.tokens.error:
                raise StartError(self.tokens.error)
            await asyncio.to_thread(self.liveness.load)
            try:
                self.maintenance = await asyncio.to_thread(
                    load_maintenance, self.config.maintenance
                )
            except ConfigError as err:
                raise StartError(f"invalid maintenance windows:\n{err}") from err
            await asyncio.to_thread(self.ledger.load)
            if self.forwarder is not None:
                await self.forwarder.open()
            else:
                log.warning(
                    "no forward: section: pushes are accepted for liveness and the NOC page, "
                    "but their history is not kept anywhere"
                )
        except BaseException:
            self._release_state_dir()
            raise
        # What was built so far (modules, inventory) lives as long as the process: keep
        # the garbage collector from walking it again at every full collection.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        sys.setswitchinterval(SWITCH_INTERVAL)
        log.info(
            "kipu-collector %s: %d sites in %d projects, state in %s",
            __version__,
            len(self.inventory.sites),
            len(self.inventory.projects()),
            self.config.state_dir,
        )

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(supervised("token watcher", self._watch_tokens))
            group.create_task(supervised("liveness saver", self._save_liveness))
            group.create_task(supervised("ledger saver", self._save_ledger))
            group.create_task(supervised("loop lag", self.pressure.run))
            if self.forwarder is not None:
                group.create_task(supervised("forwarding", self.forwarder.run))

    async def stop(self) -> None:
        self._large.shutdown(wait=False, cancel_futures=True)
        try:
            await asyncio.to_thread(self.liveness.save, True)
            await self.save_ledger()
            if self.forwarder is not None:
                await self.forwarder.close()
        finally:
            self._release_state_dir()

    def _take_state_dir(self) -> None:
        state_dir = self.config.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._lock = open(state_dir / LOCK_FILE, "ab")  # noqa: SIM115 - held open
        except OSError as err:
            raise StartError(f"cannot use state_dir {state_dir}: {err}") from err
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lock.close()
            self._lock = None
            raise StartError(f"state_dir {state_dir} is in use by another kipu-collector") from err

    def _release_state_dir(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def _watch_tokens(self) -> None:
        reported: str | None = None
        while True:
            if await asyncio.to_thread(self.tokens.refresh):
                log.info("tokens: %d sites hold a token", len(self.tokens.sites()))
            if self.tokens.error != reported:
                if self.tokens.error:
                    log.error("tokens: %s; the previous tokens stay in force", self.tokens.error)
                reported = self.tokens.error
            await asyncio.sleep(TOKEN_POLL)

    async def _save_liveness(self) -> None:
        while True:
            await asyncio.sleep(LIVENESS_SAVE)
            await asyncio.to_thread(self.liveness.save)

    async def _save_ledger(self) -> None:
        while True:
            await asyncio.sleep(LEDGER_SAVE)
            await self.save_ledger()

    async def save_ledger(self) -> None:
        """Write what the ledger took since its last save (before a report, too)."""
        taken = self.ledger.take(self.clock())
        try:
            await asyncio.to_thread(self.ledger.write, taken)
        except OSError as err:
            self.ledger.give_back(taken)
            log.error("ledger: cannot save to %s: %s", self.ledger.directory, err)

    # -- reload

    async def reload(self) -> list[str]:
        """Re-read the configuration and the inventory; returns the problems (the old
        ones stay in force when there are any)."""
        if self.config_path is None:
            return ["no configuration file to reload"]
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
                inventory = await asyncio.to_thread(load_inventory, config.inventory)
                maintenance = await asyncio.to_thread(load_maintenance, config.maintenance)
                if config.tls is not None:
                    await asyncio.to_thread(ssl_context, config.tls)  # readable?
            except (ConfigError, OSError, TlsError) as err:
                problems = err.problems if isinstance(err, ConfigError) else [err]
                for problem in problems:
                    log.error("reload refused: %s", problem)
                return [str(p) for p in problems]
            self._apply(config, inventory)
            self.maintenance = maintenance
            if config.tls is not None and self.ssl_context is not None:
                await asyncio.to_thread(load_certificates, self.ssl_context, config.tls)
                log.info("TLS certificate read again from %s", config.tls.cert_file)
            return []

    def _apply(self, config: CollectorConfig, inventory: Inventory) -> None:
        old = self.config
        for key in ("listen", "state_dir", "forward", "tls"):
            if (getattr(config, key) is None) != (getattr(old, key) is None) or (
                key != "tls" and getattr(config, key) != getattr(old, key)
            ):
                log.warning("%s changed in the configuration: takes effect on restart", key)
        self.config = dataclasses.replace(
            config, listen=old.listen, state_dir=old.state_dir, forward=old.forward
        )
        self.inventory = inventory
        self.liveness.silent_after = config.silent_after
        self.ingest.limits = config.limits
        self.ingest.forget(set(inventory.sites))
        self.memory.forget(set(inventory.sites))
        for warning in inventory.warnings:
            log.warning("inventory: %s", warning)
        log.info(
            "configuration reloaded: %d sites in %d projects",
            len(inventory.sites),
            len(inventory.projects()),
        )

    # -- the write endpoint

    async def receive(self, request: web.Request) -> web.Response:
        """Answer one remote-write push (see the README for every answer)."""
        started = time.perf_counter()
        try:
            return await self._receive(request)
        finally:
            self.stats.observe(time.perf_counter() - started)

    def _refuse(
        self,
        status: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        *,
        unread: bool = False,
    ) -> web.Response:
        self.stats.rejected[reason] += 1
        headers = {} if retry_after is None else {"Retry-After": str(int(retry_after))}
        if unread:
            # The body was not read: the connection cannot carry another request.
            headers["Connection"] = "close"
        return web.Response(status=status, text=message + "\n", headers=headers)

    def authorize(self, request: web.Request) -> Site | tuple[str, str]:
        """The inventoried site whose token the request bears, or (reason, message)."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "unauthorized", "a site token is required (Bearer)"
        site_id = self.tokens.site_for(token.strip())
        if site_id is None:
            return "unauthorized", "unknown or revoked token"
        site = self.inventory.sites.get(site_id)
        if site is None:
            return "site_not_in_inventory", f"site {site_id} is not in the inventory"
        return site

    async def _receive(self, request: web.Request) -> web.Response:
        site = self.authorize(request)
        if not isinstance(site, Site):
            reason, message = site
            return self._refuse(401, reason, message, unread=True)
        if not _is_backlog(request):
            return await self._take(request, site, contextlib.nullcontext())
        if not self.pressure.let_in():
            # Read (and drop) the body, cheap next to decoding it: cutting the connection
            # while the sender still writes would lose the Retry-After to a reset.
            unread = False
            try:
                await _read_at_most(request, self.config.limits.max_body)
            except _BodyError:
                unread = True
            return self._refuse(
                429,
                "busy",
                "busy: live pushes first, send the backlog again later",
                self.pressure.retry_after(),
                unread=unread,
            )
        try:
            return await self._take(request, site, self.pressure.turn)
        finally:
            self.pressure.let_out()

    async def _take(
        self, request: web.Request, site: Site, turn: AbstractAsyncContextManager[object]
    ) -> web.Response:
        """Read, decode and store a push; `turn` is held from decoding to storing."""
        limit = self.config.limits.max_body
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(
                413, "too_large", f"body over the limit of {limit} bytes", unread=True
            )
        encoding = request.headers.get("Content-Encoding", "snappy").strip().lower()
        if encoding != "snappy":
            return self._refuse(
                415,
                "encoding",
                f"Content-Encoding {encoding!r}: remote write is snappy",
                unread=True,
            )
        try:
            body = await _read_at_most(request, limit)
        except _BodyError as err:
            return self._refuse(err.status, err.reason, str(err), unread=True)
        if body is None:
            return self._refuse(
                413, "too_large", f"body over the limit of {limit} bytes", unread=True
            )
        async with turn:
            now = self.clock()
            try:
                if len(body) > THREAD_BODY:
                    raw = await asyncio.get_running_loop().run_in_executor(
                        self._large, raw_request, body
                    )
                else:
                    raw = raw_request(body)
                verdict = self.ingest.admit(site, raw, now)
            except RemoteWriteDecodeError as err:
                return self._refuse(400, "decode", f"cannot decode the request: {err}")
            if not isinstance(verdict, Admitted):
                return self._refuse(
                    verdict.status, verdict.reason, verdict.message, verdict.retry_after
                )
            # A request with metadata only, or none at all (agents ask for the clock
            # that way), holds nothing to store.
            if verdict.samples and self.forwarder is not None:
                refused = await self._forward(verdict)
                if refused is not None:
                    return refused
        self.liveness.pushed(site.site_id, now)
        if verdict.samples:
            self.stats.samples_received[site.project] += verdict.samples
            self.memory.observe(site.site_id, verdict.watched, now)
            self.ledger.observe(site.site_id, verdict.watched, now)
        self.stats.accepted += 1
        return web.Response(status=204)

    async def _forward(self, admitted: Admitted) -> web.Response | None:
        assert self.forwarder is not None
        if len(admitted.raw) > THREAD_BODY:
            body = await asyncio.get_running_loop().run_in_executor(
                self._large, compress, admitted.raw
            )
        else:
            body = compress(admitted.raw)
        try:
            await self.forwarder.enqueue(
                body, admitted.samples, admitted.first_ms, admitted.last_ms
            )
        except QueueFullError as err:
            return self._refuse(503, "queue_full", str(err), RETRY_QUEUE_FULL)
        except QueueDiskError as err:
            return self._refuse(503, "queue_disk", str(err), RETRY_DISK)
        return None

    # -- views

    def site_views(self) -> tuple[SiteView, ...]:
        """Every inventoried site with its state and latest values, by site_id."""
        now = self.clock()
        return tuple(
            SiteView(
                site,
                self.liveness.state(site_id, now),
                self.liveness.last_push.get(site_id),
                self.memory.latest(site_id, now),
            )
            for site_id, site in self.inventory.sites.items()  # in site_id order
        )

    def history(self, site_id: str) -> History | None:
        """The site's short memory (24 h in 5-minute steps); None before its first push."""
        return self.memory.history(site_id, self.clock())

    def snapshot(self) -> CollectorSnapshot:
        sites = self.site_views()
        stats = self.stats
        return CollectorSnapshot(
            version=__version__,
            sites=sites,
            samples_received=dict(stats.samples_received),
            requests_rejected=dict(stats.rejected),
            requests_accepted=stats.accepted,
            request_duration=Histogram(
                DURATION_BUCKETS, tuple(stats.duration_counts), stats.duration_sum
            ),
            forward=self._forward_snapshot(),
            inventory_warnings=len(self.inventory.warnings),
            active_series=sum(self.ingest.active_series(s) for s in self.inventory.sites),
            loop_lag=self.pressure.lag,
            loop_load=self.pressure.load,
        )

    def _forward_snapshot(self) -> ForwardSnapshot | None:
        forwarder = self.forwarder
        if forwarder is None:
            return None
        lanes = forwarder.lanes.snapshot()
        return ForwardSnapshot(
            queue_bytes=forwarder.spool.bytes,
            queue_samples=forwarder.spool.samples,
            dropped_samples=forwarder.spool.dropped_samples,
            corrupt_records=forwarder.spool.corrupt_records,
            requests=lanes.requests,
            rejected_samples=lanes.rejected_samples,
            undecodable_records=lanes.undecodable_records,
            last_success=lanes.last_success,
            blocked=lanes.blocked,
            failing=lanes.failing,
            syncs=forwarder.committer.syncs,
            commits=forwarder.committer.commits,
            refused_full=forwarder.refused_full,
            refused_disk=forwarder.refused_disk,
        )

    def state_counts(self) -> dict[str, int]:
        now = self.clock()
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for site_id in self.inventory.sites:
            counts[self.liveness.state(site_id, now)] += 1
        return counts


def _is_backlog(request: web.Request) -> bool:
    """Whether a push holds old samples that may wait: marked so, or large."""
    if request.headers.get(BACKLOG_HEADER) == "1":
        return True
    return request.content_length is not None and request.content_length > BACKLOG_BODY


class _BodyError(Exception):
    """The body could not be read whole: the client's fault, answered with a 4xx."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit` (never held whole).

    Raises `_BodyError` when the client hangs up before the end of its body, or sends
    nothing for `BODY_IDLE` seconds (a link cut without a word keeps a connection open).
    """
    chunks: list[bytes] = []
    size = 0
    stream = request.content.iter_chunked(64 * 1024)
    while True:
        try:
            async with asyncio.timeout(BODY_IDLE):
                chunk = await anext(stream, None)
        except TimeoutError:
            raise _BodyError(408, "timeout", f"no body byte for {BODY_IDLE:g} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as err:
            raise _BodyError(400, "incomplete", f"the body ended early: {err}") from None
        if chunk is None:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


COLLECTOR = web.AppKey("collector", Collector)


async def _write(request: web.Request) -> web.Response:
    return await request.app[COLLECTOR].receive(request)


async def _metrics(request: web.Request) -> web.Response:
    # The snapshot is taken here, on the event loop that changes what it reads; only
    # turning it into text (and reading /proc for the process figures) goes to a thread.
    snapshot = request.app[COLLECTOR].snapshot()
    speedtest = request.app[SPEEDTEST].snapshot()
    body, content_type = await asyncio.to_thread(
        metrics.render, snapshot, request.headers.get("Accept"), speedtest
    )
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _healthz(request: web.Request) -> web.Response:
    collector = request.app[COLLECTOR]
    body: dict[str, object] = {"status": "ok", "sites": collector.state_counts()}
    if collector.forwarder is not None:
        body["forward_queue_bytes"] = collector.forwarder.spool.bytes
    return web.json_response(body)


async def _reload(request: web.Request) -> web.Response:
    problems = await request.app[COLLECTOR].reload()
    if problems:
        return web.Response(status=400, text="reload refused:\n" + "\n".join(problems) + "\n")
    return web.Response(text="configuration reloaded\n")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    collector = app[COLLECTOR]
    await collector.start()
    task = asyncio.create_task(collector.run())
    yield
    if collector.forwarder is not None:
        await collector.forwarder.stop_sending()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await collector.stop()


def make_app(collector: Collector) -> web.Application:
    """The HTTP API; starting the app starts the collector, cleaning it up stops it."""
    # Bodies are read by the write handler itself, bounded by limits.max_body.
    app = web.Application(client_max_size=collector.config.limits.max_body + 1)
    app[COLLECTOR] = collector
    app.router.add_post("/api/v1/write", _write)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/-/reload", _reload)
    install_web(app, collector)
    install_speedtest(app, collector.authorize)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def serve(collector: Collector, listen: str | Sequence[str]) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Raises if it cannot start."""
    tls = collector.config.tls
    if tls is not None:
        collector.ssl_context = await asyncio.to_thread(ssl_context, tls)
    await serve_app(
        make_app(collector), listen, collector.reload, ssl_context=collector.ssl_context
    )
