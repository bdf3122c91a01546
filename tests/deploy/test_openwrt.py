"""The OpenWrt files: the procd init script parses and, run against stand-ins for procd's
shell helpers, asks procd for what the agent needs; the router's example config loads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from agent.config import load_config
from tests.support.fixtures import need

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "deploy" / "openwrt" / "kipu-agent.init"
CONFIG = ROOT / "deploy" / "openwrt" / "agent.yaml"

# procd.sh's helpers, replaced by functions that print each call, one per line.
PROCD_STANDINS = """
procd_open_instance() { echo "open_instance $*"; }
procd_close_instance() { echo "close_instance $*"; }
procd_set_param() { echo "set_param $*"; }
procd_send_signal() { echo "send_signal $*"; }
"""


def _sh() -> str:
    sh = shutil.which("sh")
    need("POSIX sh", None if sh else "not on PATH")
    assert sh is not None
    return sh


def _run_init(function: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Source the init script as /etc/rc.common would, then call one of its functions."""
    script = f'{PROCD_STANDINS}\n. "$1"\nCONFIG="$2"\n{function}\n'
    return subprocess.run(
        [_sh(), "-eu", "-c", script, "sh", str(INIT), str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_init_script_parses() -> None:
    result = subprocess.run(
        [_sh(), "-n", str(INIT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = INIT.read_text().splitlines()
    assert lines[0] == "#!/bin/sh /etc/rc.common"
    assert "USE_PROCD=1" in lines
    assert INIT.stat().st_mode & 0o111, "the init script must be executable"


def test_start_service_asks_procd_for_a_supervised_agent(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("site_id: x\n")

    result = _run_init("start_service", config)

    assert result.returncode == 0, result.stderr
    calls = result.stdout.splitlines()
    assert calls[0] == "open_instance kipu-agent"
    assert calls[-1] == "close_instance "
    params = {c.split()[1]: c.split(maxsplit=2)[2] for c in calls if c.startswith("set_param")}
    assert params["command"] == f"/opt/kipu/bin/kipu-agent --config.file={config}"
    assert params["file"] == str(config)  # procd restarts it when the file changed
    threshold, wait, retries = params["respawn"].split()
    assert retries == "0"  # a remote box never gives up restarting
    assert int(wait) > 0
    assert int(threshold) >= 60
    assert params["stdout"] == params["stderr"] == "1"
    assert int(params["term_timeout"]) >= 10  # time to save counters and spool


def test_start_service_refuses_without_a_config(tmp_path: Path) -> None:
    result = _run_init("start_service || echo refused", tmp_path / "missing.yaml")

    assert "refused" in result.stdout
    assert "open_instance" not in result.stdout
    assert "missing.yaml is missing" in result.stderr


def test_reload_sends_sighup(tmp_path: Path) -> None:
    result = _run_init("reload_service", tmp_path / "agent.yaml")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["send_signal kipu-agent kipu-agent HUP"]


def test_router_config_loads() -> None:
    config = load_config(CONFIG)

    assert config.push is not None
    assert config.push.interval >= 60  # flash: one spool write a minute at most
    assert config.heartbeat_interval >= 300
    assert config.probes.interval >= 5
    assert len(config.probes.targets) <= 3
    assert config.push.max_spool <= 32 * 1024**2
    assert {w.source for w in config.wifi} == {"iw", "dnsmasq_leases"}
