"""One component that raises never stops the others; a run loop that ends anyway makes
the process exit non-zero, so that systemd or procd restart it."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.app import Agent
from agent.config import load_config
from agent.device_poller import DevicePoller
from tests.agent_process import free_port
from tests.metrics_util import eventually
from tests.support.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: sup-0001
            state_dir: {tmp_path / "state"}
            heartbeat_interval: 100ms
            probes:
              interval: 20ms
              timeout: 200ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            """
        )
        + extra
    )
    return path


async def test_a_failing_component_keeps_probing_and_pushing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def broken_polling(self: DevicePoller) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a device the profile did not expect")

    monkeypatch.setattr(DevicePoller, "run", broken_polling)
    monkeypatch.setattr("kipu.supervise.RESTART_PAUSE", 0.05)
    caplog.set_level(logging.ERROR)
    with Receiver() as receiver:
        extra = (
            "wifi:\n"
            f"  - {{source: dnsmasq_leases, path: {tmp_path / 'leases'}}}\n"
            "push:\n"
            f"  url: {receiver.url}\n"
            "  interval: 100ms\n  timeout: 2s\n  spread: 0s\n  clock_settle: 0s\n"
        )
        path = write_config(tmp_path, extra)
        agent = Agent(await asyncio.to_thread(load_config, path), path)
        await agent.start()
        task = asyncio.create_task(agent.run())
        try:

            async def still_working() -> bool:
                targets = agent.prober.snapshot()
                return (
                    calls >= 3
                    and targets[0].stats.received >= 20
                    and len(receiver.series("kipu_probe_packets_sent_total")) >= 5
                )

            await eventually(still_working, within=15)
            assert not task.done()
            assert agent.healthy()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await agent.stop()
    failures = [r for r in caplog.records if "device polling failed" in r.getMessage()]
    assert len(failures) >= 3


@pytest.mark.parametrize("ending", ["raise RuntimeError('boom')", "return"])
def test_a_run_loop_that_ends_exits_non_zero(tmp_path: Path, ending: str) -> None:
    path = write_config(tmp_path)
    script = textwrap.dedent(
        f"""\
        import asyncio, sys
        import agent.app

        async def run(self):
            await asyncio.sleep(0.3)
            {ending}

        agent.app.Agent.run = run
        from agent.__main__ import main
        sys.exit(main(["--config.file={path}", "--web.listen-address=127.0.0.1:{free_port()}"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "run loop ended" in result.stderr
    assert "exiting so that" in result.stderr
