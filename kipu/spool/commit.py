"""Group commit: many writers, one fdatasync.

A collector acknowledges a push only once its samples are on disk. With hundreds of
sites pushing at once, one fdatasync per push would be the collector's limit; instead
every writer appends its record and waits, and one worker syncs everything appended so
far: the writers that waited together share that sync. The worker is a thread of its
own: queued behind other work in asyncio's shared pool (a thousand backlogs being
decompressed), every writer would wait for that work too.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from kipu.spool.queue import Spool


class GroupCommit:
    """Syncs `spool` for every writer waiting in `commit` (run `run` alongside)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.syncs = 0  # fdatasync rounds
        self.commits = 0  # writers served
        self._waiting: list[asyncio.Future[bool]] = []
        self._wake = asyncio.Event()

    async def commit(self) -> bool:
        """Wait until what this writer appended is on disk; False when the disk failed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Serve the writers until cancelled (the writers still waiting get False)."""
        batch: list[asyncio.Future[bool]] = []
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                # Everything appended before this line is in the sync below; a writer
                # that arrives during it waits for the next round.
                batch, self._waiting = self._waiting, []
                await loop.run_in_executor(worker, self.spool.sync)
                ok = self.spool.last_error is None
                self.syncs += 1
                self.commits += len(batch)
                _settle(batch, ok)
                batch = []
        finally:
            _settle(batch + self._waiting, False)
            worker.shutdown(wait=False)  # a sync under way ends on its own; close() waits


def _settle(futures: list[asyncio.Future[bool]], ok: bool) -> None:
    for future in futures:
        if not future.done():
            future.set_result(ok)
