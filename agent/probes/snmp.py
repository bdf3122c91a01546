"""SNMP reads with pysnmp 7's asyncio API: the only module that imports pysnmp.

One `SnmpEngine` serves every device. A poll reads a device's scalars with one GET
and all its table columns together with GETBULK requests that advance every column at
once (so 5 columns of 48 interfaces take 2-3 round trips, not 5 walks). Every poll has
a hard deadline; a failing device yields a result with `error`, never an exception.
pysnmp is imported on first use, so an agent without SNMP devices never loads it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Value = int | bytes | str


@dataclass(frozen=True)
class Credentials:
    """SNMPv2c community, or SNMPv3 USM user (protocol names as in the configuration)."""

    community: str | None = None
    user: str | None = None
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None


@dataclass(frozen=True)
class Device:
    """Where and how to read one device."""

    name: str
    address: str
    port: int
    credentials: Credentials
    timeout: float
    retries: int


@dataclass(frozen=True)
class Reading:
    """What one poll returned: scalars by OID, and table columns by OID then index."""

    device: str
    duration: float
    error: str | None = None
    scalars: dict[str, Value] = field(default_factory=dict)
    columns: dict[str, dict[str, Value]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class SnmpError(Exception):
    """A request failed: timeout, authentication, or an error status from the agent."""


def to_value(value: Any) -> Value | None:
    """A pysnmp value as int, str (OIDs, addresses) or bytes; None for the no-such markers."""
    tag = type(value).__name__
    if tag in ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null"):
        return None
    if tag in ("ObjectIdentifier", "ObjectName"):
        return str(value)
    if tag == "IpAddress":
        return ".".join(str(b) for b in bytes(value.asOctets()))
    if hasattr(value, "asOctets"):
        return bytes(value.asOctets())
    return int(value)


def index_of(oid: str, column: str) -> str | None:
    """The index part of `oid` under `column` (``column.INDEX``), or None outside it."""
    prefix = column + "."
    return oid[len(prefix) :] if oid.startswith(prefix) else None


def without_row_indexes(message: str, columns: Sequence[str]) -> str:
    """`message` with every ``COLUMN.INDEX`` of `columns` cut to ``COLUMN``."""
    # Errors are logged, and a row index can hold a client's MAC or IP address.
    for column in sorted(columns, key=len, reverse=True):
        message = re.sub(rf"(?<![0-9.]){re.escape(column)}(?:\.[0-9]+)+", column, message)
    return message


_AUTH = {
    "MD5": "usmHMACMD5AuthProtocol",
    "SHA": "usmHMACSHAAuthProtocol",
    "SHA224": "usmHMAC128SHA224AuthProtocol",
    "SHA256": "usmHMAC192SHA256AuthProtocol",
    "SHA384": "usmHMAC256SHA384AuthProtocol",
    "SHA512": "usmHMAC384SHA512AuthProtocol",
}
_PRIV = {
    "DES": "usmDESPrivProtocol",
    "AES": "usmAesCfb128Protocol",
    "AES192": "usmAesCfb192Protocol",
    "AES256": "usmAesCfb256Protocol",
}


_MODULES_OF_A_REQUEST = (
    "PYSNMP-MIB",
    "PYSNMP-SOURCE-MIB",
    "PYSNMP-USM-MIB",
    "SNMPv2-TM",
    "__PYSNMP-USM-MIB",
)


class SnmpClient:
    """Polls devices with one shared engine. Create it in a worker thread (building an
    engine reads files), use it inside the running loop."""

    max_repetitions = 25
    parallel_walks = 3

    def __init__(self) -> None:
        import pysnmp.hlapi.v3arch.asyncio as hlapi  # noqa: PLC0415 - only when SNMP is used

        self._hlapi = hlapi
        self._engine = self._new_engine()
        self._transports: dict[tuple[str, int, float, int], Any] = {}
        # pysnmp keys SNMPv3 users by name: two devices with one user name but different
        # keys would overwrite each other in one engine. The first set of keys of a name
        # uses the shared engine, any other set gets an engine of its own.
        self._usm_owner: dict[str, Credentials] = {}
        self._engines: dict[Credentials, Any] = {}
        self._rows: dict[tuple[str, str], int] = {}  # rows per (device, column) last poll

    async def warm(self) -> float:
        """Pay the engine's first-use cost before the first real poll; returns seconds.

        The first request through a new engine builds MIB and transport machinery
        (about 0.3 s). We send one GET to a UDP socket of our own on loopback that never
        answers, so that cost is paid at start, not in the first poll of a device.
        """
        start = time.perf_counter()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
            sink.bind(("127.0.0.1", 0))
            port = sink.getsockname()[1]
            device = Device("warm-up", "127.0.0.1", port, Credentials(community="public"), 0.05, 0)
            await self.poll(device, ["1.3.6.1.2.1.1.3.0"], ["1.3.6.1.2.1.2.2.1.8"], 1.0)
        self._transports.clear()
        return time.perf_counter() - start

    def close(self) -> None:
        """Close the engines' sockets."""
        for engine in (self._engine, *self._engines.values()):
            engine.close_dispatcher()
        self._engines.clear()
        self._transports.clear()

    def _new_engine(self) -> Any:
        """An engine with every MIB module a request loads already in memory.

        pysnmp reads its MIB modules from disk the first time an engine needs them,
        which would block the event loop: build engines in a worker thread (the client
        itself is built in one) and load those modules here, at once.
        """
        engine = self._hlapi.SnmpEngine()
        engine.get_mib_builder().load_modules(*_MODULES_OF_A_REQUEST)
        return engine

    async def _engine_for(self, credentials: Credentials) -> Any:
        if credentials.user is None:
            return self._engine
        owner = self._usm_owner.setdefault(credentials.user, credentials)
        if owner == credentials:
            return self._engine
        if credentials not in self._engines:
            self._engines[credentials] = await asyncio.to_thread(self._new_engine)
        return self._engines[credentials]

    def _auth(self, credentials: Credentials) -> Any:
        hlapi = self._hlapi
        if credentials.community is not None:
            return hlapi.CommunityData(credentials.community, mpModel=1)
        auth = (
            getattr(hlapi, _AUTH[credentials.auth_protocol]) if credentials.auth_protocol else None
        )
        priv = (
            getattr(hlapi, _PRIV[credentials.priv_protocol]) if credentials.priv_protocol else None
        )
        return hlapi.UsmUserData(
            credentials.user,
            authKey=credentials.auth_key,
            privKey=credentials.priv_key,
            authProtocol=auth or hlapi.usmNoAuthProtocol,
            privProtocol=priv or hlapi.usmNoPrivProtocol,
        )

    async def _transport(self, device: Device) -> Any:
        key = (device.address, device.port, device.timeout, device.retries)
        transport = self._transports.get(key)
        if transport is None:
            target = (
                self._hlapi.Udp6TransportTarget
                if ":" in device.address
                else (self._hlapi.UdpTransportTarget)
            )
            transport = await target.create(
                (device.address, device.port), timeout=device.timeout, retries=device.retries
            )
            self._transports[key] = transport
        return transport

    async def poll(
        self,
        device: Device,
        scalars: Sequence[str],
        columns: Sequence[str],
        deadline: float,
    ) -> Reading:
        """Read `scalars` and every row of `columns` within `deadline` seconds; never raises."""
        start = time.perf_counter()
        found_scalars: dict[str, Value] = {}
        found_columns: dict[str, dict[str, Value]] = {c: {} for c in columns}
        try:
            async with asyncio.timeout(deadline):
                engine = await self._engine_for(device.credentials)
                auth = self._auth(device.credentials)
                transport = await self._transport(device)
                if scalars:
                    found_scalars = await self._get(engine, auth, transport, scalars)
                if columns:
                    # A few walks at once, so the device works on one request while we
                    # decode the answer to another (BER decoding in pysnmp is pure
                    # Python and costs as much as the device's own work).
                    groups = [
                        list(columns[i :: self.parallel_walks])
                        for i in range(min(self.parallel_walks, len(columns)))
                    ]
                    async with asyncio.TaskGroup() as walks:
                        for group in groups:
                            walks.create_task(
                                self._walk(
                                    engine,
                                    auth,
                                    transport,
                                    group,
                                    found_columns,
                                    device=device.name,
                                )
                            )
        except TimeoutError:
            error = f"no complete answer within the {deadline:g}s deadline"
            return Reading(device.name, time.perf_counter() - start, error)
        except SnmpError as err:
            error = without_row_indexes(str(err), columns)
            return Reading(device.name, time.perf_counter() - start, error)
        except (OSError, ValueError, LookupError) as err:
            error = without_row_indexes(f"{type(err).__name__}: {err}", columns)
            return Reading(device.name, time.perf_counter() - start, error)
        return Reading(device.name, time.perf_counter() - start, None, found_scalars, found_columns)

    async def _get(
        self, engine: Any, auth: Any, transport: Any, oids: Sequence[str]
    ) -> dict[str, Value]:
        hlapi = self._hlapi
        binds = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for oid in oids]
        error, status, _, var_binds = await hlapi.get_cmd(
            engine, auth, transport, hlapi.ContextData(), *binds, lookupMib=False
        )
        _raise_for(error, status)
        values: dict[str, Value] = {}
        for name, value in var_binds:
            converted = to_value(value)
            if converted is not None:
                values[str(name)] = converted
        return values

    async def _walk(
        self,
        engine: Any,
        auth: Any,
        transport: Any,
        columns: list[str],
        out: dict[str, dict[str, Value]],
        *,
        device: str = "",
    ) -> None:
        hlapi = self._hlapi
        cursors = {column: column for column in columns}  # column -> last OID read
        while cursors:
            active = list(cursors)
            binds = [hlapi.ObjectType(hlapi.ObjectIdentity(cursors[c])) for c in active]
            # Ask for no more rows than the table had last time (plus one to see its
            # end): every row read past the end is decoded for nothing.
            hints = [self._rows.get((device, c)) for c in active]
            repetitions = self.max_repetitions
            if device and all(h is not None for h in hints):
                remaining = max(h - len(out[c]) for h, c in zip(hints, active, strict=True))  # type: ignore[operator]
                repetitions = max(1, min(self.max_repetitions, remaining + 1))
            error, status, _, var_binds = await hlapi.bulk_cmd(
                engine,
                auth,
                transport,
                hlapi.ContextData(),
                0,
                repetitions,
                *binds,
                lookupMib=False,
            )
            _raise_for(error, status)
            if not var_binds:
                return
            finished: set[str] = set()
            # Responses interleave: row r holds one varbind per requested column.
            for position, (name, value) in enumerate(var_binds):
                column = active[position % len(active)]
                if column in finished:
                    continue
                oid = str(name)
                index = index_of(oid, column)
                converted = to_value(value)
                if index is None or converted is None:
                    finished.add(column)
                    continue
                if cursors[column] != column and _oid_le(oid, cursors[column]):
                    # The row index can hold a client's address: name the column only.
                    raise SnmpError(f"device returned a non-increasing OID in column {column}")
                out[column][index] = converted
                cursors[column] = oid
            for column in finished:
                cursors.pop(column, None)
                self._rows[(device, column)] = len(out[column])
            if len(var_binds) < len(active):
                return


def _oid_le(a: str, b: str) -> bool:
    return tuple(int(x) for x in a.split(".")) <= tuple(int(x) for x in b.split("."))


def _raise_for(error: Any, status: Any) -> None:
    if error:
        raise SnmpError(str(error))
    if status and int(status):
        raise SnmpError(f"device answered {status.prettyPrint()}")
