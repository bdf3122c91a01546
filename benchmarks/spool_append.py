"""How fast the push spool appends and syncs on this machine's disk.

Realistic records: a 4 KB incompressible payload (a snappy remote-write body) holding
100 samples. For a sync after every 10 records and after every record, prints the
append+sync rate in records/s and samples/s (and the fdatasync rate), then how fast the
resulting spool opens (every CRC verified) and drains (oldest first, acknowledged).
The agent itself appends one record per push interval (15 s), so anything above a few
records per second is headroom; what matters on flash is one write and one fdatasync
per sync.

    python -m benchmarks.spool_append [--dir .] [--records 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from kipu.spool import Spool

SAMPLES = 100
PAYLOAD = 4096


def run(directory: Path, records: int, sync_every: int) -> None:
    payloads = [os.urandom(PAYLOAD) for _ in range(64)]
    spool = Spool(directory, max_bytes=1 << 30)
    spool.open()
    start = time.perf_counter()
    for n in range(records):
        spool.append(payloads[n % len(payloads)], SAMPLES, n * 15_000, n * 15_000 + 10)
        if (n + 1) % sync_every == 0:
            spool.sync()
    spool.sync()
    elapsed = time.perf_counter() - start
    syncs = -(-records // sync_every)
    print(
        f"sync every {sync_every:>2} records: {records / elapsed:>9,.0f} records/s "
        f"{records * SAMPLES / elapsed:>12,.0f} samples/s "
        f"{records * PAYLOAD / elapsed / 1e6:>7.1f} MB/s "
        f"({syncs / elapsed:,.0f} syncs/s, {elapsed * 1000 / syncs:.2f} ms per sync)"
    )
    spool.close()

    start = time.perf_counter()
    reopened = Spool(directory, max_bytes=1 << 30)
    reopened.open()
    opening = time.perf_counter() - start
    start = time.perf_counter()
    drained = 0
    while batch := reopened.oldest(100):
        reopened.ack(r.id for r in batch)
        drained += len(batch)
    reopened.sync()
    draining = time.perf_counter() - start
    print(
        f"{'':>22} open (verify {records} records): {opening * 1000:.0f} ms; "
        f"drain oldest-first + ack: {drained / draining:,.0f} records/s"
    )
    reopened.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=Path.cwd(), help="where to write (a temp folder inside)"
    )
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kipu-spool-bench-", dir=args.dir))
    try:
        device = os.stat(base).st_dev
        print(
            f"spool in {base} (device {os.major(device)}:{os.minor(device)}), "
            f"{args.records} records of {PAYLOAD} bytes, {SAMPLES} samples each"
        )
        for sync_every in (10, 1):
            run(base / f"every-{sync_every}", args.records, sync_every)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
