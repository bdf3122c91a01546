"""kipu-agent as a real process inside a site namespace: restarts keep availability,
names resolve and re-resolve, and ICMP permissions fall back or fail clearly."""

from __future__ import annotations

import shutil
import signal
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo.netns import Testbed, http_get
from tests.agent_process import AgentProcess, free_port
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_netns

pytestmark = requires_netns

DROP_NET_RAW = [
    "setpriv",
    "--inh-caps=-net_raw",
    "--bounding-set=-net_raw",
    "--ambient-caps=-net_raw",
]


def site_agent(
    bed: Testbed, tmp_path: Path, config: Path, wrap: list[str] | None = None
) -> AgentProcess:
    def get(host: str, port: int, path: str) -> tuple[int, bytes]:
        status, _, body = http_get(bed.site_ns, host, port, path)
        return status, body

    prefix = ["ip", "netns", "exec", bed.site_ns, *(wrap or [])]
    return AgentProcess(config, free_port(), tmp_path / "agent.log", prefix=prefix, http_get=get)


def write(path: Path, targets: str, **extra: str) -> Path:
    lines = "".join(f"{k}: {v}\n" for k, v in extra.items())
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: ns-0002
            state_dir: {path.parent / "state"}
            heartbeat_interval: 100ms
            probes:
              interval: 20ms
              timeout: 100ms
              resolve_interval: 1s
              targets:
            """
        )
        + textwrap.indent(textwrap.dedent(targets), "    ")
        + lines
    )
    return path


@contextmanager
def netns_etc(bed: Testbed, hosts: str) -> Iterator[Path]:
    """/etc/hosts and /etc/resolv.conf as `ip netns exec` shows them in the site namespace.

    resolv.conf names the namespace's own loopback, where no DNS server runs: a name
    that is not in hosts fails at once and no query leaves the test bed.
    """
    folder = Path("/etc/netns") / bed.site_ns
    folder.mkdir(parents=True)
    try:
        (folder / "hosts").write_text(hosts)
        (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        yield folder / "hosts"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_restart_keeps_availability_counters(testbed: Testbed, tmp_path: Path) -> None:
    address = testbed.target_addresses[0]
    config = write(tmp_path / "a.yaml", f"- {{name: pop, address: {address}, role: pop}}\n")
    testbed.set(delay=0.005)
    with site_agent(testbed, tmp_path, config) as first:
        wait_until(lambda: first.scrape().get("kipu_link_up") == 1)
        testbed.set(down=True)
        wait_until(lambda: first.scrape().get("kipu_link_up") == 0)
        wait_until(lambda: first.scrape().value("kipu_link_down_seconds_total") > 0.3)
        testbed.set(down=False)
        wait_until(lambda: first.scrape().get("kipu_link_up") == 1)
        before = first.scrape()
        assert first.stop(signal.SIGTERM) == 0
    with site_agent(testbed, tmp_path, config) as second:
        after = second.scrape()
        assert after.value("kipu_link_outages_total") == 1
        for name in ("kipu_link_down_seconds_total", "kipu_link_up_seconds_total"):
            assert after.value(name) >= before.value(name)
        assert after.value("kipu_link_last_change_timestamp_seconds") == before.value(
            "kipu_link_last_change_timestamp_seconds"
        )
        # The site was off between the two runs: that shows as offline time.
        assert after.value("kipu_agent_offline_seconds_total") > 0


def test_names_resolve_fail_as_lost_probes_and_re_resolve(tmp_path: Path) -> None:
    with Testbed(targets=2) as bed:
        first, second = bed.target_addresses
        with netns_etc(bed, f"127.0.0.1 localhost\n{first} far.kipu.test\n") as hosts:
            config = write(
                tmp_path / "a.yaml",
                "- {name: far, address: far.kipu.test, role: pop}\n"
                "- {name: nowhere, address: nowhere.kipu.test, role: internet}\n",
            )
            with site_agent(bed, tmp_path, config) as proc:
                far = {"target": "far", "role": "pop"}
                nowhere = {"target": "nowhere", "role": "internet"}
                wait_until(
                    lambda: proc.scrape().value("kipu_probe_packets_received_total", **far) > 5
                )
                wait_until(
                    lambda: proc.scrape().value("kipu_probe_packets_sent_total", **nowhere) > 5
                )
                scrape = proc.scrape()
                assert scrape.value("kipu_probe_packets_received_total", **nowhere) == 0
                assert scrape.value("kipu_probe_success", **nowhere) == 0
                assert scrape.value("kipu_link_up") == 1  # up_when any: far answers
                assert bed.stats().received.get(second, 0) == 0
                # Written in place: the bind mount pins the file, not its name.
                with hosts.open("r+") as f:
                    f.truncate(0)
                    f.write(f"127.0.0.1 localhost\n{second} far.kipu.test\n")
                wait_until(lambda: bed.stats().received.get(second, 0) > 5, timeout=10)
            assert "cannot resolve nowhere.kipu.test" in proc.log()
            assert f"far.kipu.test resolves to {second}" in proc.log()


def test_unprivileged_icmp_where_ping_group_range_allows(testbed: Testbed, tmp_path: Path) -> None:
    address = testbed.target_addresses[0]
    testbed.set(delay=0.040)
    config = write(tmp_path / "a.yaml", f"- {{name: gw, address: {address}, role: gateway}}\n")
    with site_agent(testbed, tmp_path, config, wrap=DROP_NET_RAW) as proc:
        labels = {"target": "gw", "role": "gateway"}
        wait_until(lambda: proc.scrape().value("kipu_probe_rtt_seconds_count", **labels) >= 50)
        scrape = proc.scrape()
        mean = scrape.value("kipu_probe_rtt_seconds_sum", **labels) / scrape.value(
            "kipu_probe_rtt_seconds_count", **labels
        )
        assert abs(mean - 0.040) < 0.001
    assert "ICMPv4 socket open (unprivileged)" in proc.log()


def test_no_icmp_permission_is_a_clear_error(tmp_path: Path) -> None:
    with Testbed(ping_group_range="1 0") as bed:
        address = bed.target_addresses[0]
        config = write(tmp_path / "a.yaml", f"- {{name: gw, address: {address}, role: gateway}}\n")
        proc = site_agent(bed, tmp_path, config, wrap=DROP_NET_RAW).start(wait=False)
        assert proc.proc is not None
        assert proc.proc.wait(30) == 2
        log = proc.log()
        assert "CAP_NET_RAW" in log
        assert "net.ipv4.ping_group_range" in log
        assert "currently 1 0" in log
