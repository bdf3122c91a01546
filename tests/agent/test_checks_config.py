"""The `checks:` section: the contract shape loads, defaults hold, errors name file:line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from agent.__main__ import config_schema
from agent.config import AgentConfig, DnsCheck, dns_server, load_config
from kipu.config import ConfigError, Problem
from tests.support.fixtures import need_module

HEAD = """\
site_id: jun-0123
probes:
  targets:
    - {name: gateway, address: 192.168.88.1, role: gateway}
"""

CONTRACT = """\
checks:
  - name: siagie
    http: {url: "https://siagie.minedu.gob.pe/", status: [200, 302], body: "SIAGIE", ca_file: null}
    interval: 5m
    timeout: 10s
  - name: dns-minedu
    dns: {query: www.minedu.gob.pe, type: A, server: "192.168.88.1:53", expect: null}
  - name: his
    tcp: {address: "his.minsa.gob.pe:443"}
"""


def write(tmp_path: Path, checks: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(HEAD + textwrap.dedent(checks))
    return path


def problems(tmp_path: Path, checks: str) -> list[tuple[int, str, str]]:
    path = write(tmp_path, checks)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found: list[Problem] = caught.value.problems
    for problem in found:
        assert str(problem).startswith(f"{path}:{problem.line}: {problem.key}: ")
    return [(p.line, p.key, p.message) for p in found]


def test_contract_shape_loads(tmp_path: Path) -> None:
    siagie, dns, his = load_config(write(tmp_path, CONTRACT)).checks
    assert siagie.kind == "http"
    assert siagie.http is not None
    assert siagie.http.status == (200, 302)
    assert siagie.http.body == "SIAGIE"
    assert siagie.http.ca_file is None
    assert siagie.http.max_redirects == 5
    assert (siagie.interval, siagie.deadline) == (300.0, 10.0)
    assert dns.kind == "dns"
    assert dns.dns == DnsCheck(query="www.minedu.gob.pe", type="A", server="192.168.88.1:53")
    assert dns.dns.expected() == ()
    assert his.kind == "tcp"
    assert his.tcp is not None
    assert his.tcp.address == "his.minsa.gob.pe:443"


def test_defaults(tmp_path: Path) -> None:
    (check,) = load_config(
        write(tmp_path, "checks: [{name: web, http: {url: 'http://x.pe/'}}]")
    ).checks
    assert (check.interval, check.timeout, check.deadline) == (60.0, None, 10.0)
    assert check.http is not None
    assert check.http.status is None  # any 2xx
    assert check.http.max_redirects == 5
    assert load_config(write(tmp_path, "")).checks == ()


def test_one_second_intervals_and_timeouts_are_valid(tmp_path: Path) -> None:
    text = """\
    checks:
      - {name: a, tcp: {address: "[2001:db8::1]:443"}, interval: 1s, timeout: 1s}
      - {name: b, tcp: {address: "127.0.0.1:80"}, interval: 3s}
    """
    a, b = load_config(write(tmp_path, text)).checks
    assert (a.interval, a.deadline) == (1.0, 1.0)
    assert b.deadline == 3.0  # the 10 s default never exceeds the interval


def test_dns_server_forms(tmp_path: Path) -> None:
    assert dns_server("192.168.88.1") == ("192.168.88.1", 53)
    assert dns_server("192.168.88.1:5353") == ("192.168.88.1", 5353)
    assert dns_server("[2001:db8::53]:53") == ("2001:db8::53", 53)
    text = """\
    checks:
      - name: minedu
        dns: {query: www.minedu.gob.pe, type: AAAA, server: "2001:db8::53", expect: ["2001:db8::1"]}
      - name: mail
        dns: {query: minsa.gob.pe, type: MX, server: "192.168.88.1", expect: mail.minsa.gob.pe}
    """
    minedu, mail = load_config(write(tmp_path, text)).checks
    assert minedu.dns is not None
    assert minedu.dns.expected() == ("2001:db8::1",)
    assert mail.dns is not None
    assert mail.dns.expected() == ("mail.minsa.gob.pe",)


def test_exactly_one_kind(tmp_path: Path) -> None:
    text = """\
    checks:
      - name: none
        interval: 5m
      - name: two
        http: {url: "https://a.pe/"}
        dns: {query: a.pe}
    """
    assert problems(tmp_path, text) == [
        (6, "checks.0.http", "set exactly one of http, dns or tcp"),
        (10, "checks.1.dns", "set exactly one of http, dns or tcp: this check has http too"),
    ]


def test_names_are_unique_label_values(tmp_path: Path) -> None:
    text = """\
    checks:
      - {name: his, tcp: {address: "his.minsa.gob.pe:443"}}
      - {name: his, tcp: {address: "sihce.minsa.gob.pe:443"}}
      - {name: "his bis", tcp: {address: "his.minsa.gob.pe:443"}}
    """
    found = problems(tmp_path, text)
    assert (7, "checks.1.name", "'his' repeats") in found
    assert (8, "checks.2.name", "'his bis' does not match [A-Za-z0-9][A-Za-z0-9_.-]*") in found


def test_timeout_at_most_the_interval_and_at_least_a_second(tmp_path: Path) -> None:
    text = """\
    checks:
      - {name: a, tcp: {address: "h.pe:1"}, interval: 5s, timeout: 10s}
      - {name: b, tcp: {address: "h.pe:1"}, interval: 500ms}
      - {name: c, tcp: {address: "h.pe:1"}, timeout: 100ms}
    """
    assert problems(tmp_path, text) == [
        (
            6,
            "checks.0.timeout",
            "10s is longer than the interval 5s: a check never overlaps itself",
        ),
        (7, "checks.1.interval", "500ms is below the minimum 1.0"),
        (8, "checks.2.timeout", "100ms is below the minimum 1.0"),
    ]


def test_http_problems(tmp_path: Path) -> None:
    text = """\
    checks:
      - name: web
        http:
          url: ftp://siagie.minedu.gob.pe/
      - name: web2
        http:
          url: http://siagie.minedu.gob.pe/
          status: [99, 200]
          body: ""
          ca_file: /etc/kipu/ca.pem
          max_redirects: 31
      - name: web3
        http: {url: "https://siagie.minedu.gob.pe/", status: []}
    """
    found = problems(tmp_path, text)
    assert (
        8,
        "checks.0.http.url",
        "'ftp://siagie.minedu.gob.pe/' is not an http:// or https:// URL",
    ) in found
    assert (15, "checks.1.http.max_redirects", "31 is above the maximum 30") in found
    assert (
        17,
        "checks.2.http.status",
        "an empty list never matches: leave status out for any 2xx",
    ) in found
    text = text.replace("          max_redirects: 31\n", "")
    found = problems(tmp_path, text)
    assert (12, "checks.1.http.status", "99 is not an HTTP status (100-599)") in found
    assert (13, "checks.1.http.body", "an empty text always matches: leave body out") in found
    assert (14, "checks.1.http.ca_file", "ca_file is for https:// URLs only") in found


def test_dns_problems(tmp_path: Path) -> None:
    text = """\
    checks:
      - name: a
        dns: {query: "www minedu", server: "dns.google:53"}
      - name: b
        dns: {query: minsa.gob.pe, type: MX}
      - name: c
        dns: {query: minsa.gob.pe, type: SRV}
      - name: d
        dns: {query: minsa.gob.pe, expect: [190.1.2.3, www.minsa.gob.pe], server: "10.0.0.1:99999"}
    """
    found = problems(tmp_path, text)
    assert (
        7,
        "checks.0.dns.query",
        "'www minedu' is neither an IP address nor a host name",
    ) in found
    assert (
        7,
        "checks.0.dns.server",
        "'dns.google:53': the server must be an IP address (with :PORT, [IPV6]:PORT for IPv6)",
    ) in found
    assert (
        9,
        "checks.1.dns.server",
        "type MX needs a server (the system's resolver: A, AAAA)",
    ) in found
    assert any(line == 11 and key == "checks.2.dns.type" for line, key, _ in found)
    assert (13, "checks.3.dns.server", "port 99999 is out of range 1-65535") in found
    text = text.replace(', server: "10.0.0.1:99999"', "")
    found = problems(tmp_path, text)
    assert (13, "checks.3.dns.expect", "'www.minsa.gob.pe' is not an IP address (type A)") in found


def test_tcp_needs_host_and_port(tmp_path: Path) -> None:
    text = """\
    checks:
      - {name: a, tcp: {address: his.minsa.gob.pe}}
      - {name: b, tcp: {address: ":443"}}
      - {name: c, tcp: {address: "his minsa:443"}}
    """
    found = problems(tmp_path, text)
    lines = {(line, key) for line, key, _ in found}
    assert {(6, "checks.0.tcp.address"), (7, "checks.1.tcp.address")} <= lines
    assert (
        8,
        "checks.2.tcp.address",
        "'his minsa' is neither an IP address nor a host name",
    ) in found


def test_example_configs_load_their_checks() -> None:
    root = Path(__file__).resolve().parents[2]
    example = (root / "deploy" / "examples" / "agent.yaml").read_text()
    # The example keeps its checks commented out; uncommented, they must load.
    lines = example.splitlines()
    start = lines.index("# checks:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    config = yaml.safe_load("\n".join(block))
    assert {c["name"] for c in config["checks"]} >= {"siagie", "dns-minedu", "his"}
    text = HEAD + "\n".join(block) + "\n"
    path = root / "deploy" / "examples" / "agent.yaml"  # for messages only
    from kipu.config import load_text  # noqa: PLC0415

    loaded = load_text(AgentConfig, text, str(path))
    assert len(loaded.checks) == len(config["checks"])


def test_schema_accepts_the_contract_and_rejects_a_bad_check() -> None:
    jsonschema = need_module("jsonschema")
    schema = json.loads(config_schema())
    document = yaml.safe_load(HEAD + CONTRACT)
    jsonschema.validate(document, schema)
    document["checks"][0]["http"]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "schema" / "kipu-agent.schema.json"
    assert "Check" in json.loads(shipped.read_text())["$defs"]


def test_an_invalid_section_is_reported_alone(tmp_path: Path) -> None:
    text = """\
    checks:
      - {name: a, tcp: {address: his.minsa.gob.pe}}
      - {name: b, dns: 53}
    """
    found = problems(tmp_path, text)
    assert [(line, key) for line, key, _ in found] == [
        (6, "checks.0.tcp.address"),
        (7, "checks.1.dns"),
    ]
