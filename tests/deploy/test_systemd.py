"""The systemd units of deploy/systemd, checked by systemd's own analyzer.

`systemd-analyze verify` loads a unit as systemd would (unknown keys, bad values, an
ExecStart that is not executable) and `systemd-analyze security --offline=yes` scores its
sandbox. Both work in a container not booted with systemd. The units name
/opt/kipu/bin, where the guide installs kipu; the test verifies a copy pointing at this
virtualenv's real console scripts, so the executable check is real too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from collector.config import load_config as load_collector_config
from tests.support.fixtures import need

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/kipu/bin"
#: Highest accepted overall exposure (0 safe ... 10 unsafe; systemd calls < 2 "OK").
EXPOSURE_LIMIT = {"kipu-agent": 2.0, "kipu-collector": 1.5}


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    need("systemd-analyze", None if tool else "not on PATH", "apt-get install systemd")
    assert tool is not None
    return subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def _test_copy(name: str, directory: Path, text: str | None = None) -> Path:
    """The unit with ExecStart at this virtualenv's console script, written in directory."""
    original = (UNITS / f"{name}.service").read_text()
    assert f"ExecStart={INSTALLED_BIN}/{name} " in original
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / name).is_file(), f"{name} is not installed in {venv_bin}"
    copy = directory / f"{name}.service"
    copy.write_text((text or original).replace(f"{INSTALLED_BIN}/", f"{venv_bin}/"))
    return copy


def _directives(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in the unit, in order."""
    section = ""
    found = []
    for raw in (UNITS / f"{name}.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def _values(name: str, key: str) -> list[str]:
    return [value for _, k, value in _directives(name) if k == key]


def _unit_diagnostics(output: str, unit: Path) -> list[str]:
    """Lines of systemd-analyze's output about this unit (not about the host's units)."""
    return [line for line in output.splitlines() if unit.name in line or str(unit) in line]


@pytest.mark.parametrize("name", ["kipu-agent", "kipu-collector"])
def test_unit_verifies_without_diagnostics(name: str, tmp_path: Path) -> None:
    unit = _test_copy(name, tmp_path)
    result = _analyze("verify", "--man=no", "--generators=no", str(unit))
    diagnostics = _unit_diagnostics(result.stdout + result.stderr, unit)
    assert diagnostics == []
    assert result.returncode == 0, result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a mistyped key and a missing binary are both reported."""
    original = (UNITS / "kipu-agent.service").read_text()
    broken = original.replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomee=yes").replace(
        f"{INSTALLED_BIN}/kipu-agent", "/nonexistent/kipu-agent"
    )
    unit = _test_copy("kipu-agent", tmp_path, broken)
    result = _analyze("verify", "--man=no", "--generators=no", str(unit))
    diagnostics = "\n".join(_unit_diagnostics(result.stderr, unit))
    assert "Unknown key 'ProtectHomee'" in diagnostics
    assert "/nonexistent/kipu-agent is not executable" in diagnostics
    assert result.returncode != 0


@pytest.mark.parametrize("name", ["kipu-agent", "kipu-collector"])
def test_exposure_stays_low(name: str, tmp_path: Path) -> None:
    unit = _test_copy(name, tmp_path)
    result = _analyze("security", "--offline=yes", "--no-pager", str(unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= EXPOSURE_LIMIT[name], result.stdout


def _security_checks(name: str, directory: Path) -> dict[str, dict[str, object]]:
    unit = _test_copy(name, directory)
    result = _analyze("security", "--offline=yes", "--json=short", "--no-pager", str(unit))
    assert result.returncode == 0, result.stderr
    return {check["name"]: check for check in json.loads(result.stdout)}


def test_agent_holds_only_cap_net_raw(tmp_path: Path) -> None:
    assert _values("kipu-agent", "AmbientCapabilities") == ["CAP_NET_RAW"]
    assert _values("kipu-agent", "CapabilityBoundingSet") == ["CAP_NET_RAW"]
    checks = _security_checks("kipu-agent", tmp_path)
    # Every other capability systemd scores is out of the bounding set.
    capability_checks = {
        n: c
        for n, c in checks.items()
        if n.startswith("CapabilityBoundingSet=") and "NET_" not in n
    }
    assert capability_checks
    assert all(c["set"] for c in capability_checks.values()), capability_checks


def test_agent_may_read_the_clock_state(tmp_path: Path) -> None:
    """adjtimex (read-only, for "is NTP synchronised") survives the @privileged deny list."""
    checks = _security_checks("kipu-agent", tmp_path)
    clock = checks["SystemCallFilter=~@clock"]
    assert "adjtimex" in str(clock["description"]), clock
    assert checks["SystemCallFilter=~@privileged"]["set"] is False  # adjtimex, only
    assert checks["SystemCallFilter=~@mount"]["set"] is True


def test_collector_holds_no_capability(tmp_path: Path) -> None:
    assert _values("kipu-collector", "CapabilityBoundingSet") == [""]
    assert _values("kipu-collector", "AmbientCapabilities") == [""]
    checks = _security_checks("kipu-collector", tmp_path)
    capability_checks = [c for n, c in checks.items() if n.startswith("CapabilityBoundingSet=")]
    assert capability_checks
    assert all(c["set"] for c in capability_checks), capability_checks


@pytest.mark.parametrize(
    ("name", "state_dir"), [("kipu-agent", "kipu"), ("kipu-collector", "kipu-collector")]
)
def test_units_share_the_hardening_baseline(name: str, state_dir: str) -> None:
    values = {key: value for _, key, value in _directives(name)}
    assert values["StateDirectory"] == state_dir
    assert values["ConfigurationDirectory"] == "kipu"
    for key, expected in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus": "1",
    }.items():
        assert values.get(key) == expected, key
    assert _values(name, "SystemCallFilter")[0] == "@system-service"
    assert "RestrictAddressFamilies" in values
    assert re.fullmatch(r"\d+M|\d+G", values["MemoryMax"])
    # The config file named in ExecStart lives in the ConfigurationDirectory.
    config_file = "agent.yaml" if name == "kipu-agent" else "collector.yaml"
    assert values["ExecStart"] == f"{INSTALLED_BIN}/{name} --config.file=/etc/kipu/{config_file}"


def test_example_configs_keep_state_where_the_units_allow_writes() -> None:
    """ProtectSystem=strict leaves only the StateDirectory writable: the examples' state
    folders must be that one."""
    agent = load_agent_config(ROOT / "deploy" / "examples" / "agent.yaml")
    assert str(agent.state_dir) == f"/var/lib/{_values('kipu-agent', 'StateDirectory')[0]}"
    collector = load_collector_config(ROOT / "deploy" / "compose" / "collector.yaml")
    state = _values("kipu-collector", "StateDirectory")[0]
    assert str(collector.state_dir) == f"/var/lib/{state}"
