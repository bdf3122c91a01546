"""The spool: a durable, bounded queue of remote-write bodies (see `kipu.spool.queue`)."""

from kipu.spool.frames import Record
from kipu.spool.queue import Spool

__all__ = ["Record", "Spool"]
