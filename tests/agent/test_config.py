"""Configuration: the contract shape loads; every kind of error names file, line and key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from agent.__main__ import config_schema
from agent.config import AgentConfig, load_config
from kipu.config import ConfigError, Problem, format_duration, parse_duration, parse_size
from kipu.config.checks import split_host_port
from tests.support.fixtures import need_module

ROOT = Path(__file__).resolve().parents[2]

CONTRACT = """\
site_id: jun-0123
listen: 127.0.0.1:9108             # /metrics, /healthz, /-/reload
state_dir: /var/lib/kipu           # counters, heartbeat, spool
probes:
  interval: 1s                     # per target; sends are spread over the interval
  timeout: 2s
  targets:
    - {name: gateway, address: 192.168.88.1, role: gateway}
    - {name: pop-huancayo, address: 10.20.0.1, role: pop}
    - {name: internet, address: one.one.one.one, role: internet}   # re-resolved periodically
link:
  up_when: any                     # any | all | or a list of roles, e.g. [pop, internet]
snmp:
  - name: router
    address: 192.168.88.1
    port: 161                      # optional, 161 by default
    profile: mikrotik              # if_mib | mikrotik | ubiquiti_airmax | ubiquiti_unifi
    community: public              # or v3: {user, auth_protocol, auth_key, priv_protocol}
    interval: 30s
wifi:                              # optional: when the agent runs on the AP itself
  - {source: iw, interface: wlan0, ssid: WiFi-Gratis}
  - {source: dnsmasq_leases, path: /tmp/dhcp.leases}
push:                              # optional
  url: https://noc.example.pe/api/v1/write
  token_file: /etc/kipu/token
  interval: 15s                    # a snapshot of every series goes to the spool this often
  max_spool: 256MiB                # oldest dropped (and counted) beyond this
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[Problem]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    for problem in caught.value.problems:
        assert problem.file == str(path)
        assert str(problem).startswith(f"{path}:{problem.line}: {problem.key or '(top)'}: ")
    return caught.value.problems


def only(found: list[Problem]) -> tuple[int, str, str]:
    assert len(found) == 1, found
    return found[0].line, found[0].key, found[0].message


def test_contract_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONTRACT))
    assert config.site_id == "jun-0123"
    assert config.probes.interval == 1.0
    assert config.probes.timeout == 2.0
    assert [t.role for t in config.probes.targets] == ["gateway", "pop", "internet"]
    assert config.link.up_when == "any"
    assert config.snmp[0].port == 161
    assert config.snmp[0].community == "public"
    assert config.wifi[1].path == Path("/tmp/dhcp.leases")
    assert config.push is not None
    assert config.push.max_spool == 256 * 1024 * 1024
    assert config.push.interval == 15.0


def test_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "site_id: a1\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n")
    )
    assert config.listen == "127.0.0.1:9108"
    assert config.state_dir == Path("/var/lib/kipu")
    assert (config.probes.interval, config.probes.timeout) == (1.0, 2.0)
    assert config.probes.targets[0].role == "other"
    assert config.link.up_when == "any"
    assert config.push is None


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONTRACT))
    with pytest.raises(AttributeError):
        config.site_id = "x"  # type: ignore[misc]
    assert isinstance(config.probes.targets, tuple)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            "site_id: Jun 1\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n",
            1,
            "site_id",
            "does not match",
        ),
        (
            "site_id: a\ncolour: red\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n",
            2,
            "colour",
            "unknown key",
        ),
        (
            "site_id: a\nprobes:\n  interval: 1 second\n"
            "  targets: [{name: g, address: 10.0.0.1}]\n",
            3,
            "probes.interval",
            "not a duration",
        ),
        (
            "site_id: a\nprobes:\n  timeout: 5\n  targets: [{name: g, address: 10.0.0.1}]\n",
            3,
            "probes.timeout",
            "not a duration",
        ),
        (
            "site_id: a\nprobes:\n  interval: 0ms\n  targets: [{name: g, address: 10.0.0.1}]\n",
            3,
            "probes.interval",
            "below the minimum",
        ),
        (
            "site_id: a\nprobes:\n  targets:\n    - {name: g, address: 10.0.0.1}\n"
            "    - {name: h, address: 'no such thing!'}\n",
            5,
            "probes.targets.1.address",
            "neither an IP address nor a host name",
        ),
        (
            "site_id: a\nprobes:\n  targets:\n    - {name: g, address: 10.0.0.1, role: gw}\n",
            4,
            "probes.targets.0.role",
            "not one of",
        ),
        (
            "site_id: a\nprobes:\n  targets:\n    - {name: g, address: 10.0.0.1}\n"
            "    - {name: g, address: 10.0.0.2}\n",
            5,
            "probes.targets.1.name",
            "repeats",
        ),
        (
            "site_id: a\nprobes:\n  targets:\n    - {address: 10.0.0.1}\n",
            4,
            "probes.targets.0.name",
            "required key is missing",
        ),
        (
            "probes: {targets: [{name: g, address: 10.0.0.1}]}\n",
            1,
            "site_id",
            "required key is missing",
        ),
        ("site_id: a\n", 1, "probes", "at least one target"),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\nlink:\n"
            "  up_when: [pop]\n",
            4,
            "link",
            "no target has that role",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\nlink:\n"
            "  up_when: sometimes\n",
            4,
            "link.up_when",
            "not one of: any, all",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\nlink:\n  up_when: []\n",
            4,
            "link.up_when",
            "can never hold",
        ),
        (
            "site_id: a\nlisten: 9108\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n",
            2,
            "listen",
            "HOST:PORT",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "heartbeat_interval: x\n",
            3,
            "heartbeat_interval",
            "not a duration",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "push:\n  url: ftp://noc\n",
            4,
            "push.url",
            "not an http",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "push:\n  url: https://noc\n  max_spool: lots\n",
            5,
            "push.max_spool",
            "not a size",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "snmp:\n  - {name: r, address: 10.0.0.1, port: 0, community: c}\n",
            4,
            "snmp.0.port",
            "below the minimum",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "snmp:\n  - {name: r, address: 10.0.0.1}\n",
            4,
            "snmp.0.community",
            "set community",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "snmp:\n  - name: r\n    address: 10.0.0.1\n    v3:\n      user: u\n"
            "      auth_protocol: SHA\n      auth_key: short\n",
            9,
            "snmp.0.v3.auth_key",
            "8",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "snmp:\n  - {name: r, address: 10.0.0.1, community: c, profile: cisco}\n",
            4,
            "snmp.0.profile",
            "unknown profile",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "wifi:\n  - {source: iw}\n",
            4,
            "wifi.0.interface",
            "needs an interface",
        ),
        (
            "site_id: a\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n"
            "snmp:\n  - {name: r, address: 10.0.0.1, community: c, retries: yes}\n",
            4,
            "snmp.0.retries",
            "expected an integer",
        ),
        ("site_id: a\nprobes:\n  targets: {name: g}\n", 3, "probes.targets", "expected a list"),
        ("site_id: a\nprobes: [1, 2]\n", 2, "probes", "expected a mapping"),
        (
            "site_id: a\nsite_id: b\nprobes: {targets: [{name: g, address: 10.0.0.1}]}\n",
            2,
            "site_id",
            "duplicate key",
        ),
    ],
)
def test_each_kind_of_error_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    found_line, found_key, found_message = only(problems(tmp_path, text))
    assert (found_line, found_key) == (line, key)
    assert message in found_message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        site_id: BAD ID
        listen: nowhere
        probes:
          interval: soon
          colour: blue
          targets:
            - {name: a, address: 10.0.0.1, role: gatewy}
            - {name: a, address: "!!"}
        push:
          url: ftp://x
          max_spool: lots
        """,
    )
    assert [(p.line, p.key) for p in found] == [
        (1, "site_id"),
        (2, "listen"),
        (4, "probes.interval"),
        (5, "probes.colour"),
        (7, "probes.targets.0.role"),
        (8, "probes.targets.1.address"),
        (8, "probes.targets.1.name"),
        (10, "push.url"),
        (11, "push.max_spool"),
    ]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    line, key, message = only(problems(tmp_path, "site_id: a\nprobes: [\n  targets: x\n"))
    assert line >= 2
    assert "not valid YAML" in message
    assert key == ""


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert "empty" in only(problems(tmp_path, ""))[2]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in str(caught.value)
    assert str(tmp_path / "absent.yaml") in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("2d", 172800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "-1s", "1 s", "1sec", "s", "1m 30s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MiB", 64 << 20), ("4GiB", 4 << 30), ("512KiB", 512 << 10), ("100MB", 10**8), ("1B", 1)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9108", "127.0.0.1", 9108),
        ("[::1]:80", "::1", 80),
        (":9108", "", 9108),
        ("localhost:1", "localhost", 1),
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    assert split_host_port(text) == (host, port)


def test_shipped_json_schema_matches_the_models() -> None:
    shipped = ROOT / "deploy" / "schema" / "kipu-agent.schema.json"
    assert shipped.read_text() == config_schema(), "regenerate: kipu-agent --print-config-schema"
    schema = json.loads(shipped.read_text())
    root = schema["$defs"][schema["$ref"].split("/")[-1]] if "$ref" in schema else schema
    assert root["additionalProperties"] is False
    assert "site_id" in root["required"]


def test_schema_validates_contract_and_rejects_unknown_keys(tmp_path: Path) -> None:
    jsonschema = need_module("jsonschema")  # in pyproject's dev extra
    schema = json.loads(config_schema())
    jsonschema.validate(yaml.safe_load(CONTRACT), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load(CONTRACT), "colour": "red"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load(CONTRACT), "listen": 5}, schema)
    assert AgentConfig.__doc__
