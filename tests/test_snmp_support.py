"""Self-tests of the SNMP counterparts (tests/support/snmp.py, tests/snmp_data).

Every recording is walked with pysnmp 7's asyncio API exactly as the agent will poll, the
growing counters grow, a test can make a 32-bit counter wrap and a device reboot, Debian's
snmpd answers SNMPv2c and SNMPv3 authPriv and refuses wrong credentials, and nftables in a
test bed drops the configured share of SNMP requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from demo.netns import Testbed
from tests.support import fixtures as support_fixtures
from tests.support.snmp import (
    DEFAULT_V3_USER,
    RECORDINGS,
    SNMP_DATA_DIR,
    Snmpd,
    SnmpSim,
    SnmpUdpClient,
    copy_recordings,
    decode_message,
    encode_request,
    parse_snmprec,
    snmp_get,
    snmpsim_unavailable_reason,
)
from tests.support.snmp_recordings import build_all, oid_key

# pysnmp's glue to pysmi calls pysmi names that pysmi 2 deprecated; the same filters belong
# in pyproject's filterwarnings for every test that imports pysnmp.
PYSNMP_WARNING_FILTERS = [
    "ignore:getReadersFromUrls is deprecated:DeprecationWarning",
    "ignore:smiV1Relaxed is deprecated:DeprecationWarning",
    "ignore:addSources is deprecated:DeprecationWarning",
    "ignore:addSearchers is deprecated:DeprecationWarning",
    "ignore:addBorrowers is deprecated:DeprecationWarning",
]
pytestmark = [pytest.mark.filterwarnings(f) for f in PYSNMP_WARNING_FILTERS]

requires_snmpsim = support_fixtures.requires_snmpsim
requires_snmpd = support_fixtures.requires_snmpd
requires_netns = support_fixtures.requires_netns
testbed = support_fixtures.testbed
snmp_data = support_fixtures.snmp_data
snmpsim = support_fixtures.snmpsim
snmpd = support_fixtures.snmpd

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN_OCTETS = "1.3.6.1.2.1.31.1.1.1.6"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"
MTXR_WL_AP = "1.3.6.1.4.1.14988.1.1.1.3.1"
MTXR_WL_RTAB = "1.3.6.1.4.1.14988.1.1.1.2.1"
MTXR_HOTSPOT_USERS = "1.3.6.1.4.1.14988.1.1.5.1.1"

INT_TAGS = {"2", "65", "66", "67", "70"}


# ------------------------------------------------------------------ pysnmp helpers


@asynccontextmanager
async def snmp_engine() -> AsyncIterator[Any]:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine  # noqa: PLC0415 (warns at import)

    engine = SnmpEngine()
    try:
        yield engine
    finally:
        engine.close_dispatcher()


def community(name: str) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import CommunityData  # noqa: PLC0415

    return CommunityData(name)  # SNMPv2c


def v3_auth(user: str, auth_key: str, priv_key: str) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import (  # noqa: PLC0415
        UsmUserData,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    return UsmUserData(
        user,
        auth_key,
        priv_key,
        authProtocol=usmHMACSHAAuthProtocol,
        privProtocol=usmAesCfb128Protocol,
    )


async def transport(address: tuple[str, int], wait: float = 1.0, retries: int = 0) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget  # noqa: PLC0415

    return await UdpTransportTarget.create(address, timeout=wait, retries=retries)


async def get(
    engine: Any, auth: Any, address: tuple[str, int], *oids: str, wait: float = 1.0
) -> tuple[Any, dict[str, Any]]:
    """(errorIndication, {oid: value}) of one GET."""
    from pysnmp.hlapi.v3arch.asyncio import (  # noqa: PLC0415
        ContextData,
        ObjectIdentity,
        ObjectType,
        get_cmd,
    )

    target = await transport(address, wait=wait)
    error, status, _, varbinds = await get_cmd(
        engine,
        auth,
        target,
        ContextData(),
        *(ObjectType(ObjectIdentity(oid)) for oid in oids),
        lookupMib=False,
    )
    assert not status, f"errorStatus {status.prettyPrint()}"
    return error, {str(name): value for name, value in varbinds}


async def walk(
    engine: Any, auth: Any, address: tuple[str, int], root: str = "1.3.6.1"
) -> dict[str, Any]:
    """Every OID under ``root`` with GETBULK, as the agent polls tables."""
    from pysnmp.hlapi.v3arch.asyncio import (  # noqa: PLC0415
        ContextData,
        ObjectIdentity,
        ObjectType,
        bulk_walk_cmd,
    )

    target = await transport(address, wait=2.0, retries=1)
    found: dict[str, Any] = {}
    async for error, status, _, varbinds in bulk_walk_cmd(
        engine,
        auth,
        target,
        ContextData(),
        0,
        50,
        ObjectType(ObjectIdentity(root)),
        lookupMib=False,
        lexicographicMode=False,
    ):
        assert error is None, f"walk of {root}: {error}"
        assert not status, f"walk of {root}: errorStatus {status.prettyPrint()}"
        for name, value in varbinds:
            found[str(name)] = value
    return found


def snmprec_tag(value: Any) -> str:
    """The .snmprec tag of a pysnmp value: the sum of its BER tag's class, format and id."""
    return str(sum(value.tagSet[0]))


def assert_served(oid: str, tag: str, text: str, value: Any) -> None:
    """``value`` (as served) is what the recording line ``oid|tag|text`` says."""
    base_tag, _, variation = tag.partition(":")
    plain_tag = base_tag.removesuffix("x")
    assert snmprec_tag(value) == plain_tag, f"{oid}: served as tag {snmprec_tag(value)}"
    if variation == "numeric":
        settings = dict(part.split("=", 1) for part in text.split(","))
        assert int(value) >= int(settings["initial"]), f"{oid}: {int(value)} below initial"
    elif plain_tag in INT_TAGS:
        assert int(value) == int(text), oid
    elif base_tag == "4x":
        assert value.asOctets() == bytes.fromhex(text), oid
    elif base_tag == "4":
        assert value.asOctets() == text.encode("iso-8859-1"), oid
    elif base_tag == "6":
        assert str(value) == text, oid
    elif base_tag == "64":
        assert value.prettyPrint() == text, oid
    else:
        raise AssertionError(f"{oid}: unexpected tag {tag}")


def column(records: dict[str, tuple[str, str]], prefix: str) -> dict[str, str]:
    """Index suffix -> value of the lines under ``prefix`` (a table column)."""
    return {
        oid[len(prefix) + 1 :]: value
        for oid, (_, value) in records.items()
        if oid.startswith(prefix + ".")
    }


def recording(name: str) -> dict[str, tuple[str, str]]:
    return parse_snmprec((SNMP_DATA_DIR / f"{name}.snmprec").read_text(encoding="iso-8859-1"))


# --------------------------------------------------------- recordings, no server


def test_recordings_on_disk_match_their_generator() -> None:
    built = build_all()
    assert sorted(built) == sorted(RECORDINGS)
    for name, text in built.items():
        on_disk = (SNMP_DATA_DIR / f"{name}.snmprec").read_text(encoding="iso-8859-1")
        assert on_disk == text, (
            f"{name}.snmprec is stale: run `python -m tests.support.snmp_recordings`"
        )


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_lines_are_sorted_unique_and_typed(name: str) -> None:
    text = (SNMP_DATA_DIR / f"{name}.snmprec").read_text(encoding="iso-8859-1")
    oids = [line.split("|", 1)[0] for line in text.splitlines()]
    assert oids == sorted(oids, key=oid_key)
    assert len(set(oids)) == len(oids)
    tags = {tag for tag, _ in recording(name).values()}
    assert tags <= {"2", "4", "4x", "6", "64", "65", "66", "67", "70", "65:numeric",
                    "67:numeric", "70:numeric"}  # fmt: skip
    for oid in (SYS_DESCR, "1.3.6.1.2.1.1.2.0", SYS_UPTIME, SYS_NAME):
        assert oid in recording(name), f"{name} lacks {oid}"


def test_interface_counts_and_counter_widths() -> None:
    counts = {name: len(column(recording(name), IF_DESCR)) for name in RECORDINGS}
    assert counts["router48"] == 48
    assert counts["switch24"] == 26
    assert counts["mikrotik"] == 7
    for name in RECORDINGS:
        hc = column(recording(name), IF_HC_IN_OCTETS)
        if name in ("legacy32", "airmax"):
            assert not hc, f"{name} must answer 32-bit counters only"
        else:
            assert len(hc) == counts[name]
    legacy_in = column(recording("legacy32"), IF_IN_OCTETS)
    assert max(int(v) for v in legacy_in.values()) > 2**32 - 10_000
    down = column(recording("switch24"), IF_OPER_STATUS)
    assert sorted(int(k) for k, v in down.items() if v == "2") == [
        9,
        10,
        17,
        18,
        19,
        20,
        23,
        24,
        26,
    ]


def test_mikrotik_wireless_tables_agree() -> None:
    rec = recording("mikrotik")
    ssids = column(rec, f"{MTXR_WL_AP}.4")
    clients = column(rec, f"{MTXR_WL_AP}.6")
    assert ssids == {"6": "WiFi-Gratis-Plaza", "7": "IE-30012-Docentes"}
    assert clients == {"6": "14", "7": "3"}
    assert rec[f"{MTXR_WL_AP}.6.6"][0] == "65"  # mtxrWlApClientCount is a Counter32
    # Registration table: MAC (6 sub-ids) + ifIndex; the ifIndex is the last sub-id.
    rows = column(rec, f"{MTXR_WL_RTAB}.3")
    per_interface = {"6": 0, "7": 0}
    for index in rows:
        parts = index.split(".")
        assert len(parts) == 7
        per_interface[parts[-1]] += 1
    assert per_interface == {"6": 14, "7": 3}
    assert rec["1.3.6.1.4.1.14988.1.1.1.4.0"] == ("66", "17")
    assert rec["1.3.6.1.4.1.14988.1.1.1.6.0"] == ("66", "0")
    assert rec["1.3.6.1.4.1.14988.1.1.6.1.0"] == ("66", "21")
    assert len(column(rec, f"{MTXR_HOTSPOT_USERS}.3")) == 9


# ------------------------------------------------------------- served by snmpsim


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSim]:
    """One responder for the read-only tests of this module (starting one costs ~1 s)."""
    support_fixtures.need("snmpsim", snmpsim_unavailable_reason())
    with SnmpSim(copy_recordings(tmp_path_factory.mktemp("snmp_data"))) as sim:
        yield sim


@requires_snmpsim
@pytest.mark.parametrize("name", RECORDINGS)
async def test_every_recording_is_served_as_written(shared_sim: SnmpSim, name: str) -> None:
    expected = recording(name)
    async with snmp_engine() as engine:
        served = await walk(engine, community(name), shared_sim.address)
    assert sorted(served, key=oid_key) == sorted(expected, key=oid_key)
    for oid, (tag, text) in expected.items():
        assert_served(oid, tag, text, served[oid])


@requires_snmpsim
async def test_mikrotik_counters_and_uptime_grow_between_polls(shared_sim: SnmpSim) -> None:
    oids = (f"{IF_HC_IN_OCTETS}.1", f"{IF_IN_OCTETS}.1", SYS_UPTIME)
    async with snmp_engine() as engine:
        error, first = await get(engine, community("mikrotik"), shared_sim.address, *oids)
        assert error is None
        deadline = time.monotonic() + 5
        while True:
            error, later = await get(engine, community("mikrotik"), shared_sim.address, *oids)
            assert error is None
            if all(int(later[oid]) > int(first[oid]) for oid in oids):
                break
            assert time.monotonic() < deadline, f"counters did not grow: {first} -> {later}"
            await asyncio.sleep(0.05)
    assert snmprec_tag(later[f"{IF_HC_IN_OCTETS}.1"]) == "70"
    assert snmprec_tag(later[f"{IF_IN_OCTETS}.1"]) == "65"


@requires_snmpsim
def test_unknown_community_gets_no_answer(shared_sim: SnmpSim) -> None:
    assert snmp_get(*shared_sim.address, "mikrotik", [SYS_NAME], timeout=2) is not None
    assert snmp_get(*shared_sim.address, "no-such-device", [SYS_NAME], timeout=0.3) is None


@requires_snmpsim
async def test_wrap_and_reboot_are_served_after_set_values(snmpsim: SnmpSim) -> None:
    wlan_in = f"{IF_IN_OCTETS}.4"
    async with snmp_engine() as engine:
        _, before = await get(engine, community("legacy32"), snmpsim.address, wlan_in, SYS_UPTIME)
        assert int(before[wlan_in]) == 4_294_967_000
        pid = snmpsim.pid
        snmpsim.set_values("legacy32", {wlan_in: ("65", 1_704), SYS_UPTIME: ("67", 1_250)})
        _, after = await get(engine, community("legacy32"), snmpsim.address, wlan_in, SYS_UPTIME)
        assert int(after[wlan_in]) == 1_704  # wrapped: 2**32 - 4_294_967_000 + 1_704 = 2_000
        assert int(after[SYS_UPTIME]) == 1_250  # went back: the device rebooted
        assert snmpsim.pid == pid, "static changes need no restart"

        # A changed numeric line needs a restart, on the same port.
        port = snmpsim.port
        snmpsim.set_values(
            "mikrotik", {f"{IF_HC_IN_OCTETS}.1": ("70:numeric", "initial=10,rate=1")}
        )
        assert snmpsim.pid != pid
        assert snmpsim.port == port
        _, hc = await get(engine, community("mikrotik"), snmpsim.address, f"{IF_HC_IN_OCTETS}.1")
        assert 10 <= int(hc[f"{IF_HC_IN_OCTETS}.1"]) < 1_000

        # A new community appears too.
        snmpsim.write_recording("extra", {SYS_NAME: ("4", "extra-device"), SYS_UPTIME: ("67", 1)})
        _, extra = await get(engine, community("extra"), snmpsim.address, SYS_NAME)
        assert extra[SYS_NAME].asOctets() == b"extra-device"


@requires_snmpsim
async def test_snmpsim_answers_snmpv3_with_the_context_name(snmp_data: Path) -> None:
    from pysnmp.hlapi.v3arch.asyncio import (  # noqa: PLC0415
        ContextData,
        ObjectIdentity,
        ObjectType,
        get_cmd,
    )

    user = DEFAULT_V3_USER
    with SnmpSim(snmp_data, v3_user=user) as sim:
        async with snmp_engine() as engine:
            target = await transport(sim.address)
            error, status, _, varbinds = await get_cmd(
                engine,
                v3_auth(user["user"], user["auth_key"], user["priv_key"]),
                target,
                ContextData(contextName="unifi"),
                ObjectType(ObjectIdentity(SYS_NAME)),
                lookupMib=False,
            )
    assert error is None
    assert not status
    assert varbinds[0][1].asOctets() == b"jun-0177-ap-posta"


# ------------------------------------------------------------------------ snmpd


@requires_snmpd
async def test_snmpd_answers_v2c_and_v3_authpriv(snmpd: Snmpd) -> None:
    user = DEFAULT_V3_USER
    async with snmp_engine() as engine:
        error, v2c = await get(engine, community("public"), snmpd.address, SYS_UPTIME, SYS_DESCR)
        assert error is None
        assert snmprec_tag(v2c[SYS_UPTIME]) == "67"  # TimeTicks
        assert v2c[SYS_DESCR].asOctets()

        v3 = v3_auth(user["user"], user["auth_key"], user["priv_key"])
        error, values = await get(engine, v3, snmpd.address, SYS_UPTIME)
        assert error is None
        assert snmprec_tag(values[SYS_UPTIME]) == "67"
        assert int(values[SYS_UPTIME]) >= int(v2c[SYS_UPTIME])  # the same daemon, later

        # The real IF-MIB of this namespace: the loopback is there.
        names = await walk(engine, v3, snmpd.address, IF_DESCR)
        assert b"lo" in {value.asOctets() for value in names.values()}


@requires_snmpd
async def test_snmpd_refuses_wrong_credentials(snmpd: Snmpd) -> None:
    user = DEFAULT_V3_USER
    async with snmp_engine() as engine:
        wrong_key = v3_auth(user["user"], "not-the-auth-passphrase", user["priv_key"])
        error, _ = await get(engine, wrong_key, snmpd.address, SYS_UPTIME)
        assert type(error).__name__ == "WrongDigest"

        unknown_user = v3_auth("intruder", user["auth_key"], user["priv_key"])
        error, _ = await get(engine, unknown_user, snmpd.address, SYS_UPTIME)
        assert type(error).__name__ == "UnknownUserName"

        # A wrong community is dropped silently: the manager times out.
        error, _ = await get(engine, community("private"), snmpd.address, SYS_UPTIME, wait=0.3)
        assert type(error).__name__ == "RequestTimedOut"


# ------------------------------------------------------------ loss in a test bed


def answered_share(client: SnmpUdpClient, requests: int, *, batch: int = 50) -> float:
    """Share of ``requests`` GETs that got an answer; batches keep buffers from overflowing."""
    answered = 0
    for start in range(0, requests, batch):
        pending = {
            client.send("mikrotik", [SYS_UPTIME]) for _ in range(min(batch, requests - start))
        }
        while pending:
            response = client.receive(timeout=0.5)  # silence: the rest were dropped
            if response is None:
                break
            if response.request_id in pending:
                pending.discard(response.request_id)
                answered += 1
    return answered / requests


@requires_netns
@requires_snmpsim
def test_nft_drops_the_configured_share_of_requests(testbed: Testbed, snmp_data: Path) -> None:
    host = testbed.target_addresses[0]
    with (
        SnmpSim(snmp_data, netns=testbed.far_ns, host=host) as sim,
        SnmpUdpClient(host, sim.port, netns=testbed.site_ns) as client,
    ):
        assert answered_share(client, 50) == 1.0

        testbed.udp_loss(sim.port, 0.3)
        share = answered_share(client, 400)
        assert 0.6 <= share <= 0.8, f"{1 - share:.0%} lost, 30% configured"

        testbed.udp_drop_all(sim.port)
        assert answered_share(client, 20) == 0.0
        assert testbed.udp_drops == {sim.port: 1.0}

        testbed.udp_loss_clear()
        assert answered_share(client, 50) == 1.0
        assert "kipu_udp_loss" in testbed.nft_ruleset()


# -------------------------------------------------------------------- the codec


def test_raw_codec_round_trips_a_request() -> None:
    message = encode_request(
        "mikrotik", 0x4B50, ["1.3.6.1.2.1.1.3.0", "1.3.6.1.4.1.14988.1.1.6.1.0"]
    )
    name, pdu, decoded = decode_message(message)
    assert (name, pdu, decoded.request_id) == ("mikrotik", 0xA0, 0x4B50)
    assert [vb.oid for vb in decoded.varbinds] == [
        "1.3.6.1.2.1.1.3.0",
        "1.3.6.1.4.1.14988.1.1.6.1.0",
    ]
