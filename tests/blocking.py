"""Every test fails if kipu's own code blocks the event loop (as aiohttp's suite does).

`blockbuster` wraps the blocking calls of the standard library (file and socket I/O,
`time.sleep`, waiting on a held lock...) and raises when one is made on a running event
loop with kipu, agent or collector code on the stack. Test code itself may block (it
drives processes and servers); the code under test may not.
"""

from __future__ import annotations

from collections.abc import Iterator

from blockbuster import BlockBuster, blockbuster_ctx

SCANNED = ["kipu", "agent", "collector"]

# Reads of procfs are served from kernel memory, never from a disk: they cannot stall.
PROCFS_READERS = [
    ("kipu/clock.py", {"host_uptime"}),
    ("agent/state.py", {"read_boot_time"}),
    ("prometheus_client/process_collector.py", {"collect", "_boot_time"}),
]
READS = ("io.BufferedReader.read", "io.TextIOWrapper.read", "os.read", "os.listdir")


# The test bed opens an agent's ICMP socket inside a network namespace from a thread of
# its own (setns changes the calling thread), and waits for it: a harness detail.
TEST_BED = ("demo/netns.py", {"call_in_netns"})
LOCKS = ("threading.Lock.acquire", "threading.Lock.acquire_lock")


def busting() -> Iterator[BlockBuster]:
    with blockbuster_ctx(SCANNED) as buster:
        for function in READS:
            for filename, names in PROCFS_READERS:
                buster.functions[function].can_block_in(filename, names)
        for function in LOCKS:
            buster.functions[function].can_block_in(*TEST_BED)
        yield buster
