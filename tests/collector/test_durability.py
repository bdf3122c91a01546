"""A 204 from the collector is a promise: what it acknowledged reaches the store, once,
even when the collector is killed (SIGKILL) while the store is down, and however many
pushes were under way. Token bindings, revocations and the last-push times survive the
kill too."""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from collector.app import LIVENESS_SAVE
from kipu.remote_write.codec import Sample, Series, encode, normalise_labels
from tests.collector.pushing import gauge_body, now_ms, post_write, with_identity
from tests.collector_process import (
    CollectorProcess,
    issue_token,
    run_collector_cli,
    write_collector,
)
from tests.metrics_util import wait_until
from tests.support.receiver import Receiver

JUNIN = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
SERIES_PER_PUSH = 20
SAMPLES_PER_SERIES = 3

Point = tuple[Series, int, float]


def push_body(push: int, base_ms: int) -> dict[Series, list[Sample]]:
    """Push number `push`: every (series, timestamp, value) in it is unique to it."""
    return {
        normalise_labels({"__name__": "kipu_test_reading", "push": str(push), "n": str(i)}): [
            (base_ms + k * 1000, float(push * 1000 + i * 10 + k)) for k in range(SAMPLES_PER_SERIES)
        ]
        for i in range(SERIES_PER_PUSH)
    }


def forwarded(body: dict[Series, list[Sample]]) -> list[Point]:
    """The points of a push as the collector forwards them for jun-0001."""
    return [(with_identity(s, **JUNIN), t, v) for s, samples in body.items() for t, v in samples]


def down_store() -> tuple[Receiver, int]:
    """A loopback receiver that is down (its port refuses) until started again."""
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()
    return receiver, port


def collector_config(tmp_path: Path, port: int) -> Path:
    return write_collector(
        tmp_path,
        extra=f"forward: {{url: 'http://127.0.0.1:{port}/api/v1/write', timeout: 5s}}\n"
        "limits: {max_series_per_site: 100000}\n",
    )


def saved_last_push(tmp_path: Path) -> dict[str, float]:
    path = tmp_path / "state" / "last-push.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text())["last_push"])


def drain(collector: CollectorProcess, receiver: Receiver, port: int, expected: int) -> None:
    """Bring the store back and wait until the collector's queue is empty."""
    receiver.start(port)

    def empty() -> bool:
        return collector.scrape().value("kipu_collector_forward_queue_samples") == 0

    wait_until(empty, timeout=60)
    # The queue is empty once the store acknowledged everything: nothing is under way.
    with receiver.lock:
        assert len(receiver.samples) >= expected


def received(receiver: Receiver) -> Counter[Point]:
    with receiver.lock:
        return Counter(receiver.samples)


@pytest.mark.parametrize(
    ("stop", "lost_seconds"),
    [(signal.SIGKILL, LIVENESS_SAVE + 1), (signal.SIGTERM, 0.0)],
    ids=["sigkill", "sigterm"],
)
def test_acknowledged_pushes_survive_a_stop_while_the_store_is_down(
    tmp_path: Path, stop: signal.Signals, lost_seconds: float
) -> None:
    """A SIGKILL loses no acknowledged sample and at most the last seconds of the
    last-push times; a SIGTERM not even those."""
    receiver, port = down_store()
    pushes = 100
    try:
        config = collector_config(tmp_path, port)
        token = issue_token(config, "jun-0001")
        expected: Counter[Point] = Counter()
        base = now_ms() - 10_000
        with CollectorProcess(config, tmp_path / "first.log") as first:
            for push in range(pushes):
                if push == pushes // 2:
                    # Half-way, once the last-push times were saved at least once.
                    wait_until(lambda: "jun-0001" in saved_last_push(tmp_path), timeout=10)
                body = push_body(push, base)
                assert post_write(first.write_url, token, encode(body)) == (204, "")
                expected.update(forwarded(body))
            last_pushed = time.time()
            assert first.stop(stop) == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
        assert received(receiver) == Counter()  # the store was down all along

        with CollectorProcess(config, tmp_path / "second.log") as second:
            scrape = second.scrape()
            assert scrape.value("kipu_collector_forward_queue_samples") == sum(expected.values())
            # The last-push time lost at most the seconds since its last save.
            restored = scrape.value("kipu_site_last_push_timestamp_seconds", **JUNIN)
            assert last_pushed - lost_seconds - 0.5 <= restored <= last_pushed
            # The token is still bound to its site: it pushes and reports at once.
            latest = push_body(pushes, now_ms())
            assert post_write(second.write_url, token, encode(latest)) == (204, "")
            expected.update(forwarded(latest))
            scrape = second.scrape()
            assert scrape.value("kipu_site_reporting", **JUNIN) == 1
            assert scrape.value("kipu_site_last_push_timestamp_seconds", **JUNIN) > last_pushed
            drain(second, receiver, port, sum(expected.values()))
            assert second.stop() == 0
        assert received(receiver) == expected  # no loss, no duplicate
    finally:
        receiver.__exit__(None, None, None)


def test_concurrent_pushes_cut_by_a_sigkill_lose_nothing_acknowledged(tmp_path: Path) -> None:
    receiver, port = down_store()
    try:
        config = collector_config(tmp_path, port)
        token = issue_token(config, "jun-0001")
        base = now_ms() - 10_000
        bodies: dict[int, dict[Series, list[Sample]]] = {}
        acknowledged: list[int] = []
        lock = threading.Lock()
        numbers = itertools.count()
        with CollectorProcess(config, tmp_path / "first.log") as first:

            def pusher() -> None:
                # Pushes until the collector dies under it; a push cut by the kill is
                # not acknowledged: it may arrive or not, but at most once.
                while True:
                    with lock:
                        push = next(numbers)
                        bodies[push] = push_body(push, base)
                    try:
                        status, _ = post_write(first.write_url, token, encode(bodies[push]))
                    except (OSError, http.client.HTTPException):
                        return
                    if status != 204:
                        return
                    with lock:
                        acknowledged.append(push)

            with ThreadPoolExecutor(4) as pool:
                workers = [pool.submit(pusher) for _ in range(4)]

                def enough() -> bool:
                    with lock:
                        return len(acknowledged) >= 60

                wait_until(enough, timeout=60)
                assert first.stop(signal.SIGKILL) == -signal.SIGKILL
                for worker in workers:
                    worker.result(30)
            assert received(receiver) == Counter()

        with CollectorProcess(config, tmp_path / "second.log") as second:
            expected = sum(len(forwarded(bodies[p])) for p in acknowledged)
            drain(second, receiver, port, expected)
        got = received(receiver)
        assert max(got.values()) == 1  # nothing twice
        sent = Counter(p for body in bodies.values() for p in forwarded(body))
        assert not got - sent  # nothing that was not sent
        for push in acknowledged:
            assert all(got[p] == 1 for p in forwarded(bodies[push])), push
    finally:
        receiver.__exit__(None, None, None)


def test_a_push_with_a_revoked_token_after_a_restart_is_refused(tmp_path: Path) -> None:
    """Revocations survive a SIGKILL as well as issues do."""
    config = write_collector(tmp_path)
    kept, revoked = issue_token(config, "jun-0001"), issue_token(config, "jun-0002")
    with CollectorProcess(config, tmp_path / "first.log") as first:
        assert post_write(first.write_url, revoked, gauge_body("kipu_link_up"))[0] == 204
        revoke = run_collector_cli("token", "revoke", "jun-0002", f"--config.file={config}")
        assert revoke.returncode == 0
        wait_until(
            lambda: post_write(first.write_url, revoked, gauge_body("kipu_link_up"))[0] == 401,
            timeout=10,
        )
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    with CollectorProcess(config, tmp_path / "second.log") as second:
        assert post_write(second.write_url, kept, gauge_body("kipu_link_up"))[0] == 204
        assert post_write(second.write_url, revoked, gauge_body("kipu_link_up"))[0] == 401
