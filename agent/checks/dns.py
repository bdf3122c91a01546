"""DNS checks: one query to a given resolver (dnspython), or the system's resolver.

With `server`, one query goes out over UDP (TCP when the answer is truncated) and the
answer's code decides: NOERROR with records of the type is an answer, REFUSED, SERVFAIL,
NXDOMAIN, no records or an unreachable server are result `dns`. Without `server`, the
name goes through the system's resolver (getaddrinfo: /etc/hosts, nsswitch,
resolv.conf), as every program of the site's box resolves names. The one phase is
`resolve`: the query's whole time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from agent.checks.model import CheckResult, PhaseTimer
from agent.config import DnsCheck, dns_server


async def run_dns(spec: DnsCheck, deadline: float) -> CheckResult:
    """Look `spec.query` up within `deadline` seconds; never raises for a failing resolver."""
    timer = PhaseTimer()
    timer.start("resolve")
    try:
        async with asyncio.timeout(deadline):
            if spec.server is None:
                answers = await _system(spec)
            else:
                answers = await _query(spec, deadline)
    except (TimeoutError, dns.exception.Timeout):
        return CheckResult("timeout", timer.close(), f"no answer within {deadline:g}s")
    except _NoAnswerError as err:
        return CheckResult("dns", timer.close(), str(err))
    except (OSError, dns.exception.DNSException) as err:
        return CheckResult("dns", timer.close(), f"{type(err).__name__}: {err}")
    phases = timer.close()
    shown = ", ".join(sorted(answers)[:5])
    expected = spec.expected()
    if expected and not any(normalise(spec.type, e) in answers for e in expected):
        return CheckResult("body", phases, f"answer {shown} lacks {', '.join(expected)}")
    return CheckResult("ok", phases, f"{spec.type} {shown}")


class _NoAnswerError(Exception):
    """The resolver answered, but without records of the type asked for."""


async def _system(spec: DnsCheck) -> set[str]:
    family = socket.AF_INET6 if spec.type == "AAAA" else socket.AF_INET
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.query, None, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise _NoAnswerError(f"system resolver: {err.strerror or err}") from None
    answers = {normalise(spec.type, str(info[4][0])) for info in infos}
    if not answers:
        raise _NoAnswerError(f"system resolver: no {spec.type} record")
    return answers


async def _query(spec: DnsCheck, deadline: float) -> set[str]:
    assert spec.server is not None
    host, port = dns_server(spec.server)
    rdtype = dns.rdatatype.from_text(spec.type)
    query = dns.message.make_query(spec.query, rdtype)
    response, _ = await dns.asyncquery.udp_with_fallback(query, host, timeout=deadline, port=port)
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise _NoAnswerError(f"{spec.server} answered {dns.rcode.to_text(rcode)}")
    answers = {
        normalise(spec.type, _rdata_text(rdata))
        for rrset in response.answer
        if rrset.rdtype == rdtype
        for rdata in rrset
    }
    if not answers:
        raise _NoAnswerError(f"{spec.server} has no {spec.type} record for {spec.query}")
    return answers


def _rdata_text(rdata: object) -> str:
    for attribute in ("address", "target", "exchange"):
        if hasattr(rdata, attribute):
            return str(getattr(rdata, attribute))
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata)


def normalise(rdtype: str, value: str) -> str:
    """An answer or an expected value in one spelling: compressed addresses, lower-case
    names without the final dot, TXT as is."""
    if rdtype in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if rdtype in ("CNAME", "MX"):
        return value.lower().rstrip(".")
    return value
