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

Privacy: a label value that looks like a MAC or IP address (or a table index that
encodes one) is never exported; the series is dropped and counted instead.
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
    clients_by_ssid,
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

_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{12}$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$")
_DOTTED = re.compile(r"^\d{1,3}(\.\d{1,3}){5,}$")  # an index holding a MAC (6+ octets)


def looks_like_address(value: str) -> bool:
    """True for MAC and IP addresses, and table indexes that encode one."""
    return bool(
        _MAC.match(value) or _IPV4.match(value) or _IPV6.match(value) or _DOTTED.match(value)
    )


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
        return DeviceState(
            uptime_seconds=uptime(reading) if spec.if_mib else None,
            interfaces=interfaces(reading) if spec.if_mib else (),
            wifi_clients=_wifi(spec.wifi, reading) if spec.wifi else None,
            custom=tuple(_samples(spec.metrics, reading)),
        )

    return Profile(f"custom:{name}", scalars, columns, extract)


def _wifi(wifi: CustomWifi, reading: Reading) -> dict[str, int]:
    if is_scalar(wifi.clients):
        count = number(reading.scalars.get(wifi.clients))
        return {text(reading.scalars.get(wifi.ssid)): count or 0}
    return clients_by_ssid(
        reading.columns.get(wifi.ssid, {}), reading.columns.get(wifi.clients, {})
    )


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
            labels = []
            for label in metric.labels:
                if label.oid:
                    label_value = text(reading.columns.get(label.oid, {}).get(index))
                elif label.index_part is not None:
                    parts = index.split(".")
                    label_value = parts[label.index_part] if label.index_part < len(parts) else ""
                else:
                    label_value = index
                labels.append((label.name, label_value))
            if any(looks_like_address(v) for _, v in labels):
                yield CustomSample(PRIVACY_DROPPED, "counter", "", (), 1.0)
                continue
            yield CustomSample(
                metric.name, metric.type, metric.help, tuple(labels), value * metric.scale
            )


PRIVACY_DROPPED = "__privacy_dropped__"
