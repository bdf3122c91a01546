"""Identity bound to the token and the per-site limits, without any I/O."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import Limits
from collector.ingest import Admitted, Ingest, Refused, relabel
from collector.inventory import Site
from kipu.remote_write.codec import (
    RemoteWriteDecodeError,
    Sample,
    Series,
    encode_labels,
    label_entry,
    normalise_labels,
    parse_request,
    serialize,
)

NOW = 1_800_000_000.0
SITE = Site(
    site_id="jun-0001",
    site_name="IE 30012",
    project="junin",
    region="Junín",
    province="Concepción",
    district="Comas",
    ubigeo="120206",
    institution_type="school",
    institution_code="0123456",
    upstream_node="n1",
    access_tech="microwave",
    latitude=None,
    longitude=None,
)


def series(name: str, **labels: str) -> Series:
    return normalise_labels({"__name__": name, **labels})


def test_identity_labels_are_replaced_never_trusted() -> None:
    spoofed = series("kipu_link_up", site_id="hco-0007", project="huanuco", region="Lima", x="1")
    assert relabel(spoofed, SITE) == (
        ("__name__", "kipu_link_up"),
        ("project", "junin"),
        ("region", "Junín"),
        ("site_id", "jun-0001"),
        ("x", "1"),
    )


def test_spoofed_series_all_become_the_sites() -> None:
    ingest = Ingest(Limits())
    now_ms = int(NOW * 1000)
    decoded: dict[Series, list[Sample]] = {
        series("up", site_id="a"): [(now_ms, 1.0)],
        series("up", site_id="b"): [(now_ms + 1000, 1.0)],
    }
    admitted = ingest.admit(SITE, serialize(decoded), NOW)
    assert isinstance(admitted, Admitted)
    assert parse_request(admitted.raw) == {
        relabel(series("up"), SITE): [(now_ms, 1.0), (now_ms + 1000, 1.0)]
    }


def test_samples_travel_as_sent_and_labels_as_relabelled() -> None:
    ingest = Ingest(Limits())
    now_ms = int(NOW * 1000)
    sent = {
        series("kipu_probe_rtt_seconds_bucket", le="0.5", target="gw", site_id="x"): [
            (now_ms - 15_000, 3.0),
            (now_ms, float("nan")),
        ],
        series("kipu_link_up"): [(now_ms, 1.0)],
    }
    admitted = ingest.admit(SITE, serialize(sent), NOW)
    assert isinstance(admitted, Admitted)
    got = parse_request(admitted.raw)
    rtt = relabel(series("kipu_probe_rtt_seconds_bucket", le="0.5", target="gw"), SITE)
    assert got[rtt][0] == (now_ms - 15_000, 3.0)
    assert got[rtt][1][0] == now_ms
    assert got[relabel(series("kipu_link_up"), SITE)] == [(now_ms, 1.0)]
    assert (admitted.samples, admitted.first_ms, admitted.last_ms) == (
        3,
        now_ms - 15_000,
        now_ms,
    )


def test_a_label_run_that_does_not_decode_is_refused() -> None:
    # One series whose label run holds a label with no name.
    raw = b"\x0a\x0c" + b"\x0a\x03\x12\x01x" + b"\x12\x05\x10\x80\x80\x80\x01"
    with pytest.raises(RemoteWriteDecodeError, match="label name"):
        Ingest(Limits()).admit(SITE, raw, NOW)


def live_push(count: int, at: float, prefix: str = "s") -> bytes:
    return serialize({series(f"{prefix}{i}"): [(int(at * 1000), 1.0)] for i in range(count)})


def test_the_series_limit() -> None:
    ingest = Ingest(Limits(max_series_per_site=10))
    assert isinstance(ingest.admit(SITE, live_push(8, NOW), NOW), Admitted)
    assert isinstance(ingest.admit(SITE, live_push(10, NOW), NOW), Admitted)  # 2 new
    refused = ingest.admit(SITE, live_push(1, NOW, "other"), NOW)
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason) == (429, "series_limit")
    assert "limit is 10 series" in refused.message
    # Fifteen minutes later the old series have left the window.
    later = NOW + 901
    assert isinstance(ingest.admit(SITE, live_push(1, later, "other"), later), Admitted)


def backlog_push(samples: int, at: float) -> bytes:
    # One series, a point a second from an hour ago.
    start = int((at - 3600) * 1000)
    return serialize({series("kipu_link_up"): [(start + i * 1000, 1.0) for i in range(samples)]})


def test_backlog_is_paced_live_is_not() -> None:
    ingest = Ingest(Limits(max_samples_per_second_per_site=100))
    # A big backlog batch passes and leaves the bucket in debt...
    first = ingest.admit(SITE, backlog_push(2000, NOW), NOW)
    assert isinstance(first, Admitted)
    assert first.backlog_samples == 2000
    # ...so the next backlog batch waits: 2000 - 500 (the burst) = 1500 over, at 100/s.
    paced = ingest.admit(SITE, backlog_push(10, NOW), NOW)
    assert isinstance(paced, Refused)
    assert (paced.status, paced.reason, paced.retry_after) == (429, "rate_limit", 15.0)
    # Live samples pass meanwhile, however many.
    for second in range(5):
        live = ingest.admit(SITE, live_push(100, NOW + second), NOW + second)
        assert isinstance(live, Admitted)
        assert live.backlog_samples == 0
    # Once the debt is paid, the backlog goes on.
    assert isinstance(ingest.admit(SITE, backlog_push(10, NOW + 15), NOW + 15), Admitted)


def test_limits_are_per_site() -> None:
    ingest = Ingest(Limits(max_samples_per_second_per_site=10))
    other = Site(**{**SITE.__dict__, "site_id": "jun-0002"})
    assert isinstance(ingest.admit(SITE, backlog_push(500, NOW), NOW), Admitted)
    assert isinstance(ingest.admit(SITE, backlog_push(1, NOW), NOW), Refused)
    assert isinstance(ingest.admit(other, backlog_push(1, NOW), NOW), Admitted)


def test_first_and_last_timestamps() -> None:
    ingest = Ingest(Limits())
    admitted = ingest.admit(SITE, backlog_push(3, NOW), NOW)
    assert isinstance(admitted, Admitted)
    start = int((NOW - 3600) * 1000)
    assert (admitted.first_ms, admitted.last_ms, admitted.samples) == (
        start,
        start + 2000,
        3,
    )


LABEL_NAMES = st.sampled_from(
    ["__name__", "site_id", "project", "region", "target", "role", "le", "Zone", "a", "z_9"]
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.dictionaries(LABEL_NAMES, st.text(max_size=12), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_relabelling_at_the_byte_level_is_the_general_relabelling(
    labels: dict[str, str], rng: random.Random
) -> None:
    labels["__name__"] = "kipu_m"
    pairs = list(labels.items())
    rng.shuffle(pairs)  # a sender need not sort its labels
    run = b"".join(label_entry(name, value) for name, value in pairs)
    expected = encode_labels(relabel(normalise_labels(labels), SITE))
    ingest = Ingest(Limits(), frozenset({"kipu_m"}))
    got, watched = ingest._relabel(run, SITE)
    assert got == expected
    assert watched == relabel(normalise_labels(labels), SITE)
    # A second site of the same shape is put together from what the first one left.
    other = dataclasses.replace(SITE, site_id="jun-0099", region="Lima", project="lima")
    assert ingest._relabel(run, other)[0] == encode_labels(relabel(normalise_labels(labels), other))
