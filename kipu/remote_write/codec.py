"""Prometheus remote write 1.0, the codec: labels, `WriteRequest` bodies, snappy.

Pure functions, no event loop. The agent encodes its snapshots with `encode`; the
collector checks pushes with `decode` and forwards with `encode`. This is the only
module that imports the generated protobuf code and cramjam (snappy).
Specification: https://prometheus.io/docs/specs/remote_write_spec/
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Mapping, Sequence

import cramjam
from google.protobuf.message import DecodeError

from kipu.remote_write.proto import remote_pb2

Series = tuple[tuple[str, str], ...]
"""A series' labels as (name, value) pairs sorted by name, `__name__` among them."""

Sample = tuple[int, float]
"""(timestamp in milliseconds since the Unix epoch, value)."""

METRIC_NAME_LABEL = "__name__"

MAX_DECOMPRESSED = 32 * 1024 * 1024
"""`decode` refuses a body whose snappy header announces more bytes than this."""

STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
"""The stale marker: the NaN with exactly these bits, and no other NaN, marks a series
that will not be appended to any more (spec: Stale Markers)."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SERIES_CACHE = 1 << 16


class InvalidLabelsError(ValueError):
    """A label set that remote write 1.0 does not allow."""


class RemoteWriteDecodeError(ValueError):
    """A body that is not a valid remote write 1.0 request; the message says why."""


def normalise_labels(labels: Mapping[str, str]) -> Series:
    """The labels as a `Series`: sorted by name and checked against the specification.

    A label with an empty value is left out: Prometheus treats it as absent, and the
    specification forbids sending it. Raises `InvalidLabelsError` for a missing or
    invalid `__name__`, an invalid or repeated label name, or a value that is not
    encodable as UTF-8.
    """
    return _checked(tuple(labels.items()))


@functools.lru_cache(maxsize=_SERIES_CACHE)
def _checked(pairs: Series) -> Series:
    # Cached: a site sends the same hundred label sets every interval, so each is
    # checked once rather than once per snapshot. Errors are not cached.
    ordered = tuple(sorted(pairs))
    previous = None
    metric_name = None
    empty = False
    for name, value in ordered:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidLabelsError(f"label {name!r}: names and values must be strings")
        if _LABEL_NAME.fullmatch(name) is None:
            raise InvalidLabelsError(f"label name {name!r} does not match [a-zA-Z_][a-zA-Z0-9_]*")
        if name == previous:
            raise InvalidLabelsError(f"label name {name!r} is repeated")
        previous = name
        if not value:
            empty = True
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidLabelsError(f"label {name!r}: value is not valid UTF-8") from None
        if name == METRIC_NAME_LABEL:
            metric_name = value
    if empty:
        ordered = tuple((name, value) for name, value in ordered if value)
    if metric_name is None:
        raise InvalidLabelsError(f"no {METRIC_NAME_LABEL} label in {_show(ordered)}")
    if _METRIC_NAME.fullmatch(metric_name) is None:
        raise InvalidLabelsError(
            f"metric name {metric_name!r} does not match [a-zA-Z_:][a-zA-Z0-9_:]*"
        )
    return ordered


def _show(series: Series) -> str:
    return "{" + ", ".join(f"{name}={value!r}" for name, value in series) + "}"


def is_stale_marker(value: float) -> bool:
    """Whether `value` is the stale marker (an ordinary NaN is not)."""
    return struct.pack("<d", value) == struct.pack("<d", STALE_NAN)


def serialize(series: Mapping[Series, Sequence[Sample]]) -> bytes:
    """The uncompressed protobuf `WriteRequest` of `encode` (for sizes and tests)."""
    request = remote_pb2.WriteRequest()
    for labels, samples in series.items():
        if not samples:
            continue
        if _checked(labels) != labels:
            raise InvalidLabelsError(
                f"labels of {_show(labels)} are not normalised (sorted by name, no empty "
                "values): build them with normalise_labels"
            )
        timeseries = request.timeseries.add()
        for name, label_value in labels:
            timeseries.labels.add(name=name, value=label_value)
        try:
            for timestamp, value in sorted(samples, key=_timestamp):
                timeseries.samples.add(timestamp=timestamp, value=value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{_show(labels)}: bad sample: {exc}") from None
    return bytes(request.SerializeToString())


def _timestamp(sample: Sample) -> int:
    return sample[0]


def encode(series: Mapping[Series, Sequence[Sample]]) -> bytes:
    """A remote write request body: protobuf `WriteRequest`, snappy block format.

    Keys are `Series` from `normalise_labels` (or `decode`); samples are (milliseconds,
    value) and are sent in timestamp order; series without samples are left out.
    Raises `InvalidLabelsError` or `ValueError` for data the protocol cannot carry.
    """
    return bytes(cramjam.snappy.compress_raw(serialize(series)))


def decode(body: bytes, *, max_decompressed: int = MAX_DECOMPRESSED) -> dict[Series, list[Sample]]:
    """The series and samples of a request body, samples in the order they came.

    Labels are checked as in `normalise_labels` (their order is forgiven and
    normalised); a series sent twice has its samples joined. Raises
    `RemoteWriteDecodeError` (a receiver answers 400 with its message) for a body that
    is not snappy block format, announces more than `max_decompressed` bytes (checked
    before anything is allocated), is not a `WriteRequest`, or has invalid labels.
    """
    return parse_request(raw_request(body, max_decompressed=max_decompressed))


def parse_request(raw: bytes) -> dict[Series, list[Sample]]:
    """The series of an uncompressed `WriteRequest` (see `decode`)."""
    request = remote_pb2.WriteRequest()
    try:
        request.ParseFromString(memoryview(raw))
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"protobuf: not a WriteRequest: {exc}") from None
    result: dict[Series, list[Sample]] = {}
    for index, timeseries in enumerate(request.timeseries):
        pairs = tuple((label.name, label.value) for label in timeseries.labels)
        try:
            labels = _checked(pairs)
        except InvalidLabelsError as exc:
            raise RemoteWriteDecodeError(f"timeseries {index}: {exc}") from None
        if timeseries.samples:
            result.setdefault(labels, []).extend(
                (sample.timestamp, sample.value) for sample in timeseries.samples
            )
    return result


def count_samples(raw: bytes) -> int:
    """The samples of an uncompressed `WriteRequest`, counted without decoding them."""
    request = remote_pb2.WriteRequest()
    try:
        request.ParseFromString(memoryview(raw))
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"protobuf: not a WriteRequest: {exc}") from None
    return sum(len(timeseries.samples) for timeseries in request.timeseries)


def snappy_uncompressed_length(body: bytes) -> int:
    """The uncompressed length a snappy block announces in its varint header."""
    value = 0
    for index, byte in enumerate(body[:5]):
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            if value > 0xFFFFFFFF:
                break
            return value
    if not body:
        raise RemoteWriteDecodeError("snappy: empty body")
    raise RemoteWriteDecodeError("snappy: invalid length header (not snappy block format?)")


def raw_request(body: bytes, *, max_decompressed: int = MAX_DECOMPRESSED) -> bytes:
    """The uncompressed `WriteRequest` of a body (snappy checked, protobuf not parsed).

    Refuses (`RemoteWriteDecodeError`) a body that is not snappy block format or that
    announces more than `max_decompressed` bytes (checked before anything is allocated).
    """
    size = snappy_uncompressed_length(body)
    if size > max_decompressed:
        raise RemoteWriteDecodeError(
            f"snappy: the body announces {size} bytes uncompressed, over the limit "
            f"of {max_decompressed}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        reason = str(exc) if str(exc).startswith("snappy") else f"snappy: {exc}"
        raise RemoteWriteDecodeError(reason) from None


def join_requests(raws: Sequence[bytes]) -> bytes:
    """One body holding every series of the uncompressed requests `raws`, in order.

    Protobuf concatenates repeated fields: the bytes of several `WriteRequest`s one
    after the other are one `WriteRequest` with all their series. Nothing is parsed, so
    this costs a copy and one compression, not a decode and an encode; a series present
    in several of them stays several entries (receivers append each in turn).
    """
    return compress(b"".join(raws))


# --- the byte level: relabel without decoding and encoding every sample -----------------
#
# A receiver that only rewrites labels need not turn every sample into Python objects and
# back: a `WriteRequest` is a run of `TimeSeries` (field 1), each a run of labels (field
# 1) then samples (field 2). `split_request` cuts a request into those runs, and
# `timeseries_entry` puts one back together with other labels; the samples' bytes travel
# untouched. Only the label runs are decoded, once per distinct run, by the caller's cache.

_LABEL_TAG = 0x0A  # field 1, length-delimited: TimeSeries.labels and WriteRequest.timeseries
_SAMPLE_TAG = 0x12  # field 2, length-delimited: TimeSeries.samples
_METADATA_TAG = 0x1A  # field 3 of WriteRequest: metadata, skipped as remote write 1.0 says
_MANY_SAMPLES = 256  # bytes of a sample run beyond which the C parser reads it


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` (its low 64 bits, as protobuf reads it) and the position
    after it; IndexError past the end, ValueError beyond ten bytes."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_request(raw: bytes) -> list[tuple[bytes, bytes]] | None:
    """The (labels, samples) byte runs of each series of an uncompressed `WriteRequest`.

    Only for the plain layout every remote-write 1.0 sender uses: at the top, series
    (and metadata, which is skipped); in each series its labels, then its samples, and
    nothing else. None for anything else, or for bytes that do not hold together: the
    caller then decodes the request the general way, which checks everything.
    """
    # Hot: a collector walks every label of every push. Lengths under 128 (nearly all)
    # are read inline rather than through _read_varint; for the others, the sum of what
    # it returns (the length, and the position after it) is where the entry ends.
    parts: list[tuple[bytes, bytes]] = []
    end_of_request = len(raw)
    pos = 0
    try:
        while pos < end_of_request:
            tag = raw[pos]
            length = raw[pos + 1]
            if length < 0x80:
                start = pos + 2
            else:
                length, start = _read_varint(raw, pos + 1)
            end = start + length
            if end > end_of_request:
                return None
            if tag != _LABEL_TAG:
                if tag != _METADATA_TAG:
                    return None
                pos = end
                continue
            p = start
            while p < end and raw[p] == _LABEL_TAG:
                size = raw[p + 1]
                p = p + 2 + size if size < 0x80 else sum(_read_varint(raw, p + 1))
            labels_end = p
            while p < end and raw[p] == _SAMPLE_TAG:
                size = raw[p + 1]
                p = p + 2 + size if size < 0x80 else sum(_read_varint(raw, p + 1))
            if p != end:
                return None
            parts.append((raw[start:labels_end], raw[labels_end:end]))
            pos = end
    except (IndexError, ValueError):
        return None
    return parts


def strip_labels(run: bytes, names: frozenset[bytes]) -> bytes | None:
    """The label run without the labels named `names`, cut at the byte level.

    None when the run is not laid out as encoders lay it out (each label its name, then
    its value): the caller then decodes it whole.
    """
    kept: list[bytes] = []
    end = len(run)
    pos = start = 0
    try:
        while pos < end:
            if run[pos] != _LABEL_TAG:
                return None
            size, body = (
                (run[pos + 1], pos + 2) if run[pos + 1] < 0x80 else _read_varint(run, pos + 1)
            )
            stop = body + size
            if stop > end or run[body] != _LABEL_TAG:
                return None
            name_size = run[body + 1]
            if name_size >= 0x80:  # no label name is that long: not our layout
                return None
            if run[body + 2 : body + 2 + name_size] in names:
                kept.append(run[start:pos])
                start = stop
            pos = stop
    except (IndexError, ValueError):
        return None
    if start == 0:
        return run
    kept.append(run[start:])
    return b"".join(kept)


def label_entry(name: str, value: str) -> bytes:
    """One label of a label run."""
    return encode_labels(((name, value),))


def parse_labels(run: bytes) -> Series:
    """The labels of a label run, checked as `normalise_labels` does.

    Raises `RemoteWriteDecodeError` for a run that is not labels or holds invalid ones.
    """
    timeseries = remote_pb2.TimeSeries()
    try:
        timeseries.ParseFromString(run)
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"protobuf: not a series' labels: {exc}") from None
    pairs = tuple((label.name, label.value) for label in timeseries.labels)
    try:
        return _checked(pairs)
    except InvalidLabelsError as exc:
        raise RemoteWriteDecodeError(str(exc)) from None


def encode_labels(series: Series) -> bytes:
    """The label run of `series` (labels as given: sorted and checked by the caller)."""
    timeseries = remote_pb2.TimeSeries()
    for name, value in series:
        timeseries.labels.add(name=name, value=value)
    return bytes(timeseries.SerializeToString())


def sample_timestamps(run: bytes) -> list[int]:
    """The timestamps of a sample run (milliseconds); RemoteWriteDecodeError if malformed."""
    # Hot, and nearly always one sample laid out as every encoder lays it out: the
    # value (tag 0x09, 8 bytes), then the timestamp (tag 0x10, a varint to the end).
    if len(run) > 12 and run[2] == 0x09 and run[11] == 0x10 and run[1] == len(run) - 2:
        stamp = shift = 0
        for byte in run[12:]:
            stamp |= (byte & 0x7F) << shift
            shift += 7
        if run[-1] < 0x80 and min(run[12:-1], default=0x80) >= 0x80 and stamp < 1 << 63:
            return [stamp]
    if len(run) > _MANY_SAMPLES:
        # A backlog batch: hundreds of samples per series. The C parser reads them
        # faster than a loop here would, and checks them as well.
        timeseries = remote_pb2.TimeSeries()
        try:
            timeseries.ParseFromString(run)
        except DecodeError as exc:
            raise RemoteWriteDecodeError(f"protobuf: bad samples: {exc}") from None
        if timeseries.labels:
            raise RemoteWriteDecodeError("protobuf: bad samples: a label among them")
        return [sample.timestamp for sample in timeseries.samples]
    stamps: list[int] = []
    end = len(run)
    pos = 0
    try:
        while pos < end:
            if run[pos] != _SAMPLE_TAG:
                raise ValueError("not a sample")
            size, start = _read_varint(run, pos + 1)
            stop = start + size
            if stop > end:
                raise ValueError("sample past the end")
            stamp = 0
            p = start
            while p < stop:  # Sample: value (field 1, 8 bytes), timestamp (field 2, varint)
                tag = run[p]
                if tag == 0x09:
                    p += 9
                elif tag == 0x10:
                    stamp, p = _read_varint(run, p + 1)
                else:
                    raise ValueError(f"unexpected field tag {tag:#x} in a sample")
            if p != stop:
                raise ValueError("sample fields past its end")
            if stamp >= 1 << 63:  # int64 two's complement: before 1970
                stamp -= 1 << 64
            stamps.append(stamp)
            pos = stop
    except (IndexError, ValueError) as exc:
        raise RemoteWriteDecodeError(f"protobuf: bad samples: {exc}") from None
    return stamps


def sample_values(run: bytes) -> list[Sample]:
    """The (timestamp, value) samples of a sample run; RemoteWriteDecodeError if malformed."""
    if len(run) > 12 and run[2] == 0x09 and run[11] == 0x10 and run[1] == len(run) - 2:
        # One sample, laid out as encoders lay it out.
        (value,) = _DOUBLE.unpack_from(run, 3)
        return [(sample_timestamps(run)[0], value)]
    timeseries = remote_pb2.TimeSeries()
    try:
        timeseries.ParseFromString(run)
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"protobuf: bad samples: {exc}") from None
    return [(sample.timestamp, sample.value) for sample in timeseries.samples]


_DOUBLE = struct.Struct("<d")


def encode_samples(samples: Sequence[Sample]) -> bytes:
    """The sample run of `samples` (in the order given)."""
    timeseries = remote_pb2.TimeSeries()
    for timestamp, value in samples:
        timeseries.samples.add(timestamp=timestamp, value=value)
    return bytes(timeseries.SerializeToString())


def timeseries_entry(labels: bytes, samples: bytes) -> bytes:
    """One `WriteRequest.timeseries` entry from a label run and a sample run."""
    size = len(labels) + len(samples)
    if size < 0x80:
        return b"\x0a" + _SMALL[size] + labels + samples
    return b"\x0a" + _varint(size) + labels + samples


_SMALL = [bytes((n,)) for n in range(0x80)]


def compress(raw: bytes) -> bytes:
    """A request body (snappy block format) from an uncompressed `WriteRequest`."""
    return bytes(cramjam.snappy.compress_raw(raw))
