"""Durable forwarding: accepted pushes wait in a spool on disk until the store has them.

A push is acknowledged (204) only once its samples are in the forward queue on disk:
writers share fdatasyncs (`kipu.spool.commit.GroupCommit`). The shared sender lanes
(`kipu.lanes`) forward it with the agent's answer rules: live first (the newest pushes,
merged), the backlog beside it, oldest first, and nothing dropped but what the store
refuses on its own. Requests are joined without decoding (`concatenate`): the collector
spends its CPU on ingest, the store is on the LAN.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from collector.config import Forward
from kipu.lanes import Lanes, LaneSettings
from kipu.remote_write.client import RemoteWriteClient
from kipu.spool import Spool
from kipu.spool.commit import GroupCommit
from kipu.version import __version__

log = logging.getLogger(__name__)

QUEUE_DIR = "forward"
SEGMENT_BYTES = 8 << 20
HEADROOM = 1.05  # the spool's own bound: never reached, the queue refuses first
SETTINGS = LaneSettings(
    live_records=64,
    backlog_records=512,
    batch_bytes=8 << 20,
    retry_base=0.5,
    retry_cap=30.0,
    blocked_base=5.0,
    blocked_cap=300.0,
    idle_poll=0.5,
    merge="concatenate",
)


class QueueFullError(Exception):
    """The forward queue holds `max_queue` bytes already: 503 until the store drains it."""


class QueueDiskError(Exception):
    """The forward queue cannot write to its disk: 503 until it can."""


class Forwarder:
    """The forward queue and the lanes that empty it into the store."""

    def __init__(self, config: Forward, state_dir: Path) -> None:
        self.config = config
        self.spool = Spool(
            state_dir / QUEUE_DIR, int(config.max_queue * HEADROOM), segment_bytes=SEGMENT_BYTES
        )
        self.committer = GroupCommit(self.spool)
        self.client = RemoteWriteClient(
            config.url,
            token_file=config.token_file,
            ca_file=config.ca_file,
            timeout=config.timeout,
            user_agent=f"kipu-collector/{__version__}",
        )
        self.lanes = Lanes(self.spool, self.client, SETTINGS, name="forward")
        self.refused_full = 0
        self.refused_disk = 0

    async def open(self) -> None:
        await asyncio.to_thread(self.spool.open)
        self.lanes.opened()
        if len(self.spool):
            log.info(
                "forward queue holds %d pushes (%d samples) from before",
                len(self.spool),
                self.spool.samples,
            )

    async def enqueue(self, body: bytes, samples: int, first_ms: int, last_ms: int) -> None:
        """Put one push in the queue, on disk, before returning; raises when it cannot."""
        if self.spool.bytes + len(body) > self.config.max_queue:
            self.refused_full += 1
            raise QueueFullError(
                f"the forward queue is full ({self.spool.bytes} bytes): the store is behind"
            )
        record = self.spool.append(body, samples, first_ms, last_ms)
        if not await self.committer.commit():
            # Not durable: take it back out, so that the push sent again is the only copy.
            self.spool.ack([record.id])
            self.refused_disk += 1
            raise QueueDiskError(f"the forward queue cannot write: {self.spool.last_error}")
        self.lanes.notify([record])

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.committer.run())
            group.create_task(self.lanes.run())

    async def stop_sending(self) -> None:
        await self.lanes.stop(min(5.0, self.config.timeout))

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self.spool.close)
        finally:
            await self.client.close()
