"""Custom SNMP profiles from YAML: OIDs to metrics, labels from table indexes.

```yaml
if_mib: true                          # also read interfaces from IF-MIB (default)
metrics:
  - name: kipu_radio_signal_dbm
    oid: 1.3.6.1.4.1.41112.1.4.5.1.5  # a table column (walked) or a scalar ending in .0
    type: gauge                       # gauge | counter
    help: Signal of the radio link.
    scale: 1                          # multiplies the value (e.g. 0.1 for tenths)
    labels:
      - {name: radio}                 # the row's whole index
      - {name: ssid, oid: 1.3.6.1.4.1.41112.1.4.5.1.2}   # another column, same row
      - {name: chain, index_part: 1}  # one component of the index
wifi:                                 # optional: feeds kipu_wifi_clients
  clients: 1.3.6.1.4.1.9999.1.2.1.3   # per-SSID column, or a scalar
  ssid: 1.3.6.1.4.1.9999.1.2.1.2      # the SSID column (or scalar) beside it
```

Privacy: the users of a free public network are people, and a label value is exported
only when it is on an allow-list of values that cannot hold their MAC or IP address.
A series with any other label value (and an SSID of the `wifi` block that fails the
same rule) is dropped and counted in `kipu_snmp_privacy_dropped_series_total`. The rule:

1. A label taken from the row's index (the whole index, or any `index_part` of it) is
   refused when the index has 4 or more parts: such indexes are how MIBs key rows by
   IPv4 address (`2.192.168.88.23`: ifIndex + address), MAC address or IPv6 address.
2. A raw OCTET STRING, less trailing NUL padding, must decode as UTF-8. When it is 4, 6,
   8, 16 or 20 bytes long (with or without the padding), the lengths of IPv4, MAC,
   EUI-64 or IPv4z, IPv6 and IPv6z addresses, it must also be a plain word: ASCII
   letters, digits, `-` and `_` only, with at least one letter (`ether1`, `eth0`).
3. The text (of any value: OCTET STRING, number, IpAddress, OID) must be printable
   (`str.isprintable()`: no control or format characters) and must not contain, anywhere:
   - a MAC address: six groups of 1-2 hex digits joined by `:` or `-`
     (`3c:28:6d:a:11:22`), or of exactly 2 hex digits joined by a space, `.` or `_`
     (`3C 28 6D 0A 11 22`); three groups of 4 hex digits joined by `.`, `-` or `:`
     (Cisco `3c28.6d0a.1122`, HP `3c28-6d0a-1122`);
   - 12 or more hex digits in a row (`3c286d0a1122`, `android-3c286d0a1122`, EUI-64,
     and so a decimal number of 12 digits or more);
   - 4 or more decimal numbers joined by one of `.`, `-`, `_` (IPv4 `192.168.88.23`,
     `ip-192-168-88-23`, an index that encodes an address);
   - IPv6 notation: three or more groups of 1-4 hex digits joined by colons, or `::`
     anywhere (`fd00:5e:88::23`, `::1`, `::ffff:192.168.88.23`).
   Together these refuse every textual form that Python's `ipaddress` accepts.

So interface names (`ether1`, `wlan0`, `sfp-sfpplus1`), SSIDs with spaces and accents
(`WiFi Gratis Plaza`, `Estación`), radio names and small indexes (`1`, `2.1`) pass; a
few harmless values are refused too (an 8-byte SSID with a space such as `Plaza 01`,
a time of day `12:30:45`, a version `1.2.3.4`). Numbers are not limited in size: an
IPv4 address written as one 32-bit integer passes, as large ifIndex values must.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.probes.snmp import Reading, Value
from agent.profiles.model import (
    IF_MIB_COLUMNS,
    IF_MIB_SCALARS,
    DeviceState,
    Profile,
    interfaces,
    number,
    text,
    uptime,
)
from agent.snapshots import CustomSample
from kipu.config import Validated, load_file, setting

OID_PATTERN = r"[0-9]+(\.[0-9]+)+"
METRIC_PATTERN = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]*"
RESERVED_LABELS = {"device", "site_id", "project", "region", "job", "instance"}

PRIVACY_DROPPED = "__privacy_dropped__"
# Stands in for each refused series, so the poller can count it.
_DROPPED = CustomSample(PRIVACY_DROPPED, "counter", "", (), 1.0)

# Byte lengths of IPv4, MAC, EUI-64 or InetAddressIPv4z, IPv6, InetAddressIPv6z.
ADDRESS_LENGTHS = frozenset({4, 6, 8, 16, 20})
MIN_ADDRESS_INDEX_PARTS = 4

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*")
_HEX = "[0-9A-Fa-f]"
_ADDRESS_FORMS = (
    re.compile(rf"(?<!{_HEX}){_HEX}{{1,2}}([:-])(?:{_HEX}{{1,2}}\1){{4}}{_HEX}{{1,2}}(?!{_HEX})"),
    re.compile(rf"(?<!{_HEX}){_HEX}{{2}}([ ._])(?:{_HEX}{{2}}\1){{4}}{_HEX}{{2}}(?!{_HEX})"),
    re.compile(rf"(?<!{_HEX}){_HEX}{{4}}([.:-]){_HEX}{{4}}\1{_HEX}{{4}}(?!{_HEX})"),
    re.compile(rf"{_HEX}{{12,}}"),
    re.compile(r"[0-9]+(?:[._-][0-9]+){3,}"),
    re.compile(rf"{_HEX}{{1,4}}(?::{_HEX}{{1,4}}){{2,}}|::"),
)


def allowed_text(value: str) -> bool:
    """True when `value` is printable and holds no MAC or IP address in any notation."""
    return value.isprintable() and not any(form.search(value) for form in _ADDRESS_FORMS)


def label_text(value: Value | None) -> str | None:
    """A column's value as a label, or None when it is not on the privacy allow-list."""
    if value is None:
        return ""
    if not isinstance(value, bytes):
        shown = str(value)
        return shown if allowed_text(shown) else None
    body = value.rstrip(b"\x00")  # NUL padding of fixed-size fields
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Any string of an address's length *is* an address as raw octets; only a plain
    # word is more likely a name (ether1) than bytes that happen to be printable.
    if {len(value), len(body)} & ADDRESS_LENGTHS and not _PLAIN_WORD.fullmatch(decoded):
        return None
    return decoded if allowed_text(decoded) else None


def index_label(index: str, part: int | None) -> str | None:
    """The whole index or one part of it as a label; None when the index may hold an address."""
    parts = index.split(".")
    if len(parts) >= MIN_ADDRESS_INDEX_PARTS:
        return None
    value = index if part is None else (parts[part] if part < len(parts) else "")
    return value if allowed_text(value) else None


@dataclass(frozen=True)
class CustomLabel(Validated):
    """A label of a custom metric: the row's index, a part of it, or another column."""

    name: str = setting(doc="Label name.", pattern=LABEL_PATTERN)
    oid: str | None = setting(
        None, doc="Column whose value, same row, is the label.", pattern=OID_PATTERN
    )
    index_part: int | None = setting(None, doc="Component of the index (0-based).", minimum=0)

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.oid is not None and self.index_part is not None:
            yield "index_part", "use either oid or index_part, not both"
        if self.name in RESERVED_LABELS:
            yield "name", f"{self.name!r} is reserved"


@dataclass(frozen=True)
class CustomMetric(Validated):
    """One OID exported as a metric."""

    name: str = setting(doc="Metric name.", pattern=METRIC_PATTERN)
    oid: str = setting(doc="Scalar (ending in .0) or table column.", pattern=OID_PATTERN)
    type: Literal["gauge", "counter"] = setting("gauge", doc="Metric type.")
    help: str = setting("", doc="Help text.")
    scale: float = setting(1.0, doc="Factor applied to the value.")
    labels: tuple[CustomLabel, ...] = setting(
        default_factory=tuple, doc="Labels from the table row.", unique="name"
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.oid.endswith(".0") and self.labels:
            yield "labels", "a scalar (OID ending in .0) has no row to take labels from"
        if self.type == "counter" and not self.name.endswith("_total"):
            yield "name", "a counter's name must end in _total"


@dataclass(frozen=True)
class CustomWifi:
    """Where a custom device keeps its WiFi clients per SSID."""

    clients: str = setting(doc="Clients column (per SSID) or scalar.", pattern=OID_PATTERN)
    ssid: str = setting(doc="SSID column or scalar.", pattern=OID_PATTERN)


@dataclass(frozen=True)
class CustomProfileFile:
    """A custom SNMP profile."""

    if_mib: bool = setting(True, doc="Also read interfaces from IF-MIB.")
    metrics: tuple[CustomMetric, ...] = setting(
        default_factory=tuple, doc="OIDs to export.", unique="name"
    )
    wifi: CustomWifi | None = setting(None, doc="WiFi clients per SSID.")


def is_scalar(oid: str) -> bool:
    return oid.endswith(".0")


def load_profile(path: Path) -> Profile:
    """Load a custom profile; ConfigError names the file, line and key of every problem."""
    spec = load_file(CustomProfileFile, path)
    return build_profile(spec, path.stem)


def build_profile(spec: CustomProfileFile, name: str) -> Profile:
    oids = [m.oid for m in spec.metrics]
    oids += [label.oid for m in spec.metrics for label in m.labels if label.oid]
    if spec.wifi:
        oids += [spec.wifi.clients, spec.wifi.ssid]
    scalars = tuple(dict.fromkeys(o for o in oids if is_scalar(o)))
    columns = tuple(dict.fromkeys(o for o in oids if not is_scalar(o)))
    if spec.if_mib:
        scalars = tuple(dict.fromkeys((*IF_MIB_SCALARS, *scalars)))
        columns = tuple(dict.fromkeys((*IF_MIB_COLUMNS, *columns)))

    def extract(reading: Reading) -> DeviceState:
        wifi_clients, wifi_dropped = _wifi(spec.wifi, reading) if spec.wifi else (None, 0)
        return DeviceState(
            uptime_seconds=uptime(reading) if spec.if_mib else None,
            interfaces=interfaces(reading) if spec.if_mib else (),
            wifi_clients=wifi_clients,
            custom=(*_samples(spec.metrics, reading), *[_DROPPED] * wifi_dropped),
        )

    return Profile(f"custom:{name}", scalars, columns, extract)


def _wifi(wifi: CustomWifi, reading: Reading) -> tuple[dict[str, int], int]:
    """Clients per SSID, and how many SSIDs were refused by the privacy rule."""
    if is_scalar(wifi.clients):
        ssids = {"": reading.scalars.get(wifi.ssid)}
        counts: dict[str, Value] = {}
        if wifi.clients in reading.scalars:
            counts = {"": reading.scalars[wifi.clients]}
    else:
        ssids = dict(reading.columns.get(wifi.ssid, {}))
        counts = reading.columns.get(wifi.clients, {})
    clients: dict[str, int] = {}
    dropped = 0
    for index, raw in ssids.items():
        ssid = label_text(raw)
        if ssid is None:
            dropped += 1
            continue
        clients[ssid] = clients.get(ssid, 0) + (number(counts.get(index)) or 0)
    return clients, dropped


def _numeric(value: Value | None) -> float | None:
    if isinstance(value, int):
        return float(value)
    if isinstance(value, bytes | str):
        try:
            return float(text(value) if isinstance(value, bytes) else value)
        except ValueError:
            return None
    return None


def _samples(metrics: tuple[CustomMetric, ...], reading: Reading) -> Iterator[CustomSample]:
    for metric in metrics:
        if is_scalar(metric.oid):
            rows: dict[str, Value] = {}
            if metric.oid in reading.scalars:
                rows = {"": reading.scalars[metric.oid]}
        else:
            rows = reading.columns.get(metric.oid, {})
        for index, raw in rows.items():
            value = _numeric(raw)
            if value is None:
                continue
            labels = _labels(metric.labels, reading, index)
            if labels is None:
                yield _DROPPED
            else:
                yield CustomSample(
                    metric.name, metric.type, metric.help, labels, value * metric.scale
                )


def _labels(
    labels: tuple[CustomLabel, ...], reading: Reading, index: str
) -> tuple[tuple[str, str], ...] | None:
    """The labels of one row, or None when any of them is refused by the privacy rule."""
    found = []
    for label in labels:
        if label.oid:
            value = label_text(reading.columns.get(label.oid, {}).get(index))
        else:
            value = index_label(index, label.index_part)
        if value is None:
            return None
        found.append((label.name, value))
    return tuple(found)
