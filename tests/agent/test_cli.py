"""kipu-agent as a process: flags, exit codes, signals, restarts and power cuts."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from agent.state import STATE_FILE
from kipu.version import __version__
from tests.agent_process import AgentProcess, free_port, loopback_post, run_agent_cli
from tests.metrics_util import wait_until


def config(
    tmp_path: Path,
    targets: str = "",
    name: str = "agent.yaml",
    heartbeat: str = "100ms",
    **extra: str,
) -> Path:
    targets = targets or (
        "    - {name: gw, address: 127.0.0.1, role: gateway}\n"
        "    - {name: net, address: 127.0.0.3, role: internet}\n"
    )
    lines = "".join(f"{k}: {v}\n" for k, v in extra.items())
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: cli-0001
            state_dir: {tmp_path / "state"}
            heartbeat_interval: {heartbeat}
            probes:
              interval: 50ms
              timeout: 300ms
              targets:
            """
        )
        + targets
        + lines
    )
    return path


def agent(tmp_path: Path, path: Path | None = None) -> AgentProcess:
    return AgentProcess(path or config(tmp_path), free_port(), tmp_path / "agent.log")


def test_version() -> None:
    result = run_agent_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kipu-agent {__version__}"


def test_check_config(tmp_path: Path) -> None:
    good = run_agent_cli(f"--config.file={config(tmp_path)}", "--check-config")
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad_path = config(tmp_path, name="bad.yaml", colour="red", listen="nowhere")
    bad = run_agent_cli(f"--config.file={bad_path}", "--check-config")
    assert bad.returncode == 1
    assert f"{bad_path}:10: colour: unknown key" in bad.stderr
    assert f"{bad_path}:11: listen: 'nowhere' is not HOST:PORT" in bad.stderr


def test_missing_flag_and_bad_listen_flag(tmp_path: Path) -> None:
    assert run_agent_cli().returncode == 2
    bad = run_agent_cli(f"--config.file={config(tmp_path)}", "--web.listen-address=oops")
    assert bad.returncode == 1
    assert "--web.listen-address" in bad.stderr


def test_print_config_schema() -> None:
    result = run_agent_cli("--print-config-schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "kipu-agent configuration"


def test_sigterm_saves_and_a_restart_keeps_the_counters(tmp_path: Path) -> None:
    # No heartbeat save during the test: only the start and the stop write the state.
    path = config(tmp_path, heartbeat="1h")
    with agent(tmp_path, path) as first:
        wait_until(lambda: first.scrape().value("kipu_link_up_seconds_total") > 0.5)
        up_last_seen = first.scrape().value("kipu_link_up_seconds_total")
        assert first.stop(signal.SIGTERM) == 0
    saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    up_before = saved["counters"]["up_seconds"]
    # Saved at the stop: the start's save had next to nothing.
    assert up_before >= up_last_seen > 0.5

    with agent(tmp_path, path) as second:
        scrape = second.scrape()
        assert scrape.value("kipu_link_up_seconds_total") >= up_before
        assert scrape.value("kipu_link_outages_total") == 0
        wait_until(lambda: second.scrape().value("kipu_link_up_seconds_total") > up_before + 0.3)


def test_power_cut_shows_as_offline_seconds(tmp_path: Path) -> None:
    path = config(tmp_path)
    with agent(tmp_path, path) as first:
        wait_until((tmp_path / "state" / STATE_FILE).exists)
        wait_until(lambda: first.scrape().value("kipu_link_up_seconds_total") > 0.3)
        first.stop(signal.SIGKILL)  # no chance to save: like pulling the plug
    state_file = tmp_path / "state" / STATE_FILE
    saved = json.loads(state_file.read_text())
    # The plug stayed out for an hour: move the last heartbeat back by that much.
    saved["heartbeat"] -= 3600
    state_file.write_text(json.dumps(saved))
    with agent(tmp_path, path) as second:
        scrape = second.scrape()
        assert 3600 <= scrape.value("kipu_agent_offline_seconds_total") < 3660
        assert scrape.value("kipu_link_up_seconds_total") >= saved["counters"]["up_seconds"]
    assert "not running for" in second.log()


def test_sighup_reload_bad_then_good(tmp_path: Path) -> None:
    path = config(tmp_path)
    with agent(tmp_path, path) as proc:
        wait_until(
            lambda: proc.scrape().get("kipu_probe_success", target="gw", role="gateway") == 1
        )
        good_text = path.read_text()
        path.write_text(good_text.replace("interval: 50ms", "interval: fast"))
        proc.send(signal.SIGHUP)
        wait_until(lambda: "reload refused" in proc.log())
        assert f"{path}:5: probes.interval" in proc.log()
        sent = proc.scrape().value("kipu_probe_packets_sent_total", target="gw", role="gateway")
        wait_until(
            lambda: (
                proc.scrape().value("kipu_probe_packets_sent_total", target="gw", role="gateway")
                > sent + 3
            )
        )
        path.write_text(good_text.replace("name: net", "name: other"))
        proc.send(signal.SIGHUP)
        wait_until(
            lambda: "other" in proc.scrape().label_values("kipu_probe_packets_sent_total", "target")
        )
        assert "net" not in proc.scrape().label_values("kipu_probe_packets_sent_total", "target")
        status, body = loopback_post("127.0.0.1", proc.port, "/-/reload")
        assert status == 200, body


def test_state_dir_in_use_and_port_in_use(tmp_path: Path) -> None:
    path = config(tmp_path)
    with agent(tmp_path, path) as first:
        twin = run_agent_cli(
            f"--config.file={path}", f"--web.listen-address=127.0.0.1:{free_port()}"
        )
        assert twin.returncode == 2
        assert "in use by another kipu-agent" in twin.stderr
        (tmp_path / "b").mkdir()
        other = config(tmp_path / "b")
        clash = run_agent_cli(
            f"--config.file={other}", f"--web.listen-address=127.0.0.1:{first.port}"
        )
        assert clash.returncode == 2
        assert f"cannot listen on 127.0.0.1:{first.port}" in clash.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_exit_code(tmp_path: Path, sig: int) -> None:
    with agent(tmp_path) as proc:
        assert proc.stop(sig) == 0


def test_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    path = config(tmp_path)
    path.write_text(
        path.read_text()
        + f"push:\n  url: https://127.0.0.1:1/api/v1/write\n  ca_file: {tmp_path / 'no-ca.pem'}\n"
    )
    result = run_agent_cli(f"--config.file={path}", f"--web.listen-address=127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "no-ca.pem" in result.stderr
    assert "Traceback" not in result.stderr
