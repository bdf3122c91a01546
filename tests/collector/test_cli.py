"""kipu-collector's command line as an operator meets it: every command in a real
process, exit codes, and what goes to stdout and what to stderr."""

from __future__ import annotations

import datetime
import json
import re
import signal
import socket
import textwrap
import time
from pathlib import Path

from kipu.version import __version__
from tests.agent_process import free_port, loopback_get
from tests.collector.pushing import gauge_body, post_write
from tests.collector_process import (
    SITES,
    CollectorProcess,
    issue_token,
    run_collector_cli,
    write_collector,
)
from tests.metrics_util import wait_until

TOKEN = re.compile(r"kipu_[A-Za-z0-9_-]{43}")
ISO_DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


def check(config: Path) -> tuple[int, str, str]:
    result = run_collector_cli(f"--config.file={config}", "--check-config")
    return result.returncode, result.stdout, result.stderr


def push(collector: CollectorProcess, token: str) -> int:
    return post_write(collector.write_url, token, gauge_body("kipu_link_up"))[0]


def start_fails(collector: CollectorProcess) -> int:
    """Start `collector`, expecting it to exit by itself; its exit code."""
    collector.start(wait=False)
    try:
        assert collector.proc is not None
        return collector.proc.wait(30)
    finally:
        collector.__exit__(None, None, None)


def problems(stderr: str, file: Path) -> list[tuple[int, str]]:
    """(line, dotted key) of every FILE:LINE: key: message line after the heading."""
    lines = stderr.splitlines()
    assert lines[0] == "kipu-collector: invalid configuration or inventory:", stderr
    keys = []
    for line in lines[1:]:
        found = re.fullmatch(rf"{re.escape(str(file))}:(\d+): ([\w.]+): \S.*", line)
        assert found, line
        keys.append((int(found.group(1)), found.group(2)))
    return keys


def test_version() -> None:
    result = run_collector_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kipu-collector {__version__}\n"


def test_check_config_counts_sites_and_warns_on_stderr(tmp_path: Path) -> None:
    doubtful = (
        '  - {site_id: jun-0003, site_name: Plaza Comas, project: junin, ubigeo: "120206",\n'
        "     region: Lima, institution_type: plaza_wifi, upstream_node: nodo-concepcion,\n"
        "     access_tech: radio, latitude: 11.92, longitude: -75.31}\n"
    )
    config = write_collector(tmp_path, sites=SITES + doubtful)
    inventory = tmp_path / "sites.yaml"
    status, out, err = check(config)
    assert status == 0, err
    assert out == f"{config}: OK, 4 sites in 2 projects ({inventory})\n"
    # The fourth row starts at line 10 of the inventory; each warning names its key's line.
    assert err.splitlines() == [
        f"warning: {inventory}:11: sites.3.region: 'Lima' differs from INEI's 'Junín' "
        "for ubigeo 120206",
        f"warning: {inventory}:12: sites.3.latitude: 11.92 is outside Peru (latitude -18.6 to 0.2)",
    ]
    # A clean inventory: no warning at all.
    status, out, err = check(write_collector(tmp_path / "clean"))
    assert (status, err) == (0, "")
    assert "OK, 3 sites in 2 projects" in out


def test_an_invalid_configuration_lists_every_problem(tmp_path: Path) -> None:
    config = write_collector(
        tmp_path,
        extra=textwrap.dedent(
            """\
            listen: somewhere
            limits: {max_body: a lot}
            forward: {url: 'ftp://store/api/v1/write'}
            tls: {cert_file: noc.crt}
            timezone: Mars/Olympus
            """
        ),
    )
    for argv in ((f"--config.file={config}", "--check-config"), (f"--config.file={config}",)):
        result = run_collector_cli(*argv)
        assert result.returncode == 1, result
        assert result.stdout == ""
        # write_collector's three lines come first: the extra ones start at line 4.
        assert problems(result.stderr, config) == [
            (4, "listen"),
            (5, "limits.max_body"),
            (6, "forward.url"),
            (7, "tls.key_file"),
            (8, "timezone"),
        ]


def test_an_invalid_inventory_lists_every_problem(tmp_path: Path) -> None:
    bad = textwrap.dedent(
        """\
        sites:
          - {site_id: jun-0001, site_name: A, project: junin, ubigeo: "999999",
             institution_type: school, upstream_node: n1, access_tech: microwave}
          - {site_id: jun-0001, site_name: B, project: junin, ubigeo: "120206",
             institution_type: mall, upstream_node: n1, access_tech: microwave}
          - {site_id: Jun 2, site_name: C, project: junin, ubigeo: "120206",
             institution_type: school, upstream_node: n1, access_tech: pigeon}
        """
    )
    config = write_collector(tmp_path, sites=bad)
    inventory = tmp_path / "sites.yaml"
    status, out, err = check(config)
    assert (status, out) == (1, "")
    assert problems(err, inventory) == [
        (2, "sites.0.ubigeo"),
        (4, "sites.1.site_id"),
        (5, "sites.1.institution_type"),
        (6, "sites.2.site_id"),
        (7, "sites.2.access_tech"),
    ]


def test_token_issue_prints_the_token_alone_and_it_works(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    result = run_collector_cli("token", "issue", "jun-0001", f"--config.file={config}")
    assert (result.returncode, result.stderr) == (0, "")
    assert TOKEN.fullmatch(result.stdout.removesuffix("\n")), result.stdout
    assert result.stdout.count("\n") == 1
    token = result.stdout.strip()
    # The flag may come before the command too.
    before = run_collector_cli(f"--config.file={config}", "token", "issue", "jun-0002")
    assert (before.returncode, before.stderr) == (0, "")
    assert TOKEN.fullmatch(before.stdout.removesuffix("\n")), before.stdout
    # A site missing from the inventory: still the token alone on stdout, the warning
    # on stderr; the collector refuses its pushes until the inventory has it.
    ghost = run_collector_cli("token", "issue", "ghost-0001", f"--config.file={config}")
    assert ghost.returncode == 0, ghost.stderr
    assert TOKEN.fullmatch(ghost.stdout.removesuffix("\n")), ghost.stdout
    assert ghost.stdout.count("\n") == 1
    assert "ghost-0001 is not in the inventory" in ghost.stderr
    with CollectorProcess(config, tmp_path / "collector.log") as collector:
        assert push(collector, token) == 204
        assert push(collector, before.stdout.strip()) == 204
        status, text = post_write(collector.write_url, ghost.stdout.strip(), gauge_body("x"))
        assert (status, text.strip()) == (401, "site ghost-0001 is not in the inventory")
        scrape = collector.scrape()
        ids = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
        assert scrape.value("kipu_site_reporting", **ids) == 1


def test_a_bad_site_id_is_refused(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    result = run_collector_cli("token", "issue", "Jun 1", f"--config.file={config}")
    assert (result.returncode, result.stdout) == (1, "")
    assert "'Jun 1' is not a site id" in result.stderr


def test_token_revoke_revokes_every_token_of_the_site(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    first, second = issue_token(config, "jun-0001"), issue_token(config, "jun-0001")
    other = issue_token(config, "hco-0007")
    with CollectorProcess(config, tmp_path / "collector.log") as collector:
        assert [push(collector, t) for t in (first, second, other)] == [204, 204, 204]
        result = run_collector_cli("token", "revoke", "jun-0001", f"--config.file={config}")
        assert (result.returncode, result.stdout) == (0, "")
        assert result.stderr == "jun-0001: 2 tokens revoked\n"
        # The running collector takes the change without a restart.
        wait_until(lambda: [push(collector, t) for t in (first, second)] == [401, 401], 10)
        assert push(collector, other) == 204
        again = run_collector_cli("token", "revoke", "jun-0001", f"--config.file={config}")
        assert again.returncode == 1
        assert again.stderr == "jun-0001: 0 tokens revoked\n"
        never = run_collector_cli("token", "revoke", "jun-0002", f"--config.file={config}")
        assert never.returncode == 1
        # A new token for the revoked site works again.
        fresh = issue_token(config, "jun-0001")
        wait_until(lambda: push(collector, fresh) == 204, 10)
        assert push(collector, first) == 401


def test_token_list_shows_sites_and_dates_never_a_token(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    empty = run_collector_cli("token", "list", f"--config.file={config}")
    assert (empty.returncode, empty.stdout) == (0, "")
    tokens = [issue_token(config, s) for s in ("jun-0001", "jun-0002", "jun-0001", "hco-0007")]
    revoked = run_collector_cli("token", "revoke", "jun-0002", f"--config.file={config}")
    assert revoked.returncode == 0
    result = run_collector_cli("token", "list", f"--config.file={config}")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["jun-0001", "jun-0002", "jun-0001", "hco-0007"]
    for site_id, issued, state in rows:
        assert re.fullmatch(f"issued {ISO_DATE}", issued), issued
        moment = datetime.datetime.fromisoformat(issued.removeprefix("issued "))
        assert abs(moment.timestamp() - time.time()) < 300
        expected = f"revoked {ISO_DATE}" if site_id == "jun-0002" else "active"
        assert re.fullmatch(expected, state), state
    printed = result.stdout + result.stderr
    for token in tokens:
        assert token not in printed
        assert token.removeprefix("kipu_")[:12] not in printed


def test_a_missing_config_file_is_a_usage_error() -> None:
    for argv in ((), ("--check-config",), ("token", "issue", "jun-0001"), ("token", "list")):
        result = run_collector_cli(*argv)
        assert result.returncode == 2, (argv, result)
        assert result.stdout == ""
        assert result.stderr.startswith("usage: kipu-collector"), result.stderr
        assert "--config.file is required" in result.stderr


def test_the_listen_address_in_use_exits_2(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        collector = CollectorProcess(config, tmp_path / "collector.log", port=port)
        assert start_fails(collector) == 2
    last = collector.log().splitlines()[-1]
    assert last.startswith(f"kipu-collector: cannot listen on 127.0.0.1:{port}: "), last
    assert last.lower().endswith("address already in use"), last


def test_several_listen_addresses_serve_the_same_collector(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    other = free_port()
    extra = [f"--web.listen-address=127.0.0.2:{other}"]
    token = issue_token(config, "jun-0001")
    with CollectorProcess(config, tmp_path / "collector.log", extra_args=extra) as collector:
        assert (
            post_write(f"http://127.0.0.2:{other}/api/v1/write", token, gauge_body("x"))[0] == 204
        )
        status, body = loopback_get("127.0.0.1", collector.port, "/api/v1/sites/jun-0001")
        assert status == 200, body
        assert json.loads(body)["state"] == "reporting"
    assert f"listening on http://127.0.0.2:{other}" in collector.log()


def test_a_state_folder_in_use_exits_2(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    with CollectorProcess(config, tmp_path / "first.log") as first:
        second = CollectorProcess(config, tmp_path / "second.log")
        assert start_fails(second) == 2
        state = tmp_path / "state"
        assert f"kipu-collector: state_dir {state} is in use by another kipu-collector" in (
            second.log()
        )
        assert first.healthy()  # the first one is untouched
        assert first.stop() == 0


def test_sigterm_exits_0_and_saves_the_last_pushes(tmp_path: Path) -> None:
    config = write_collector(tmp_path)
    token = issue_token(config, "hco-0007")
    with CollectorProcess(config, tmp_path / "collector.log") as collector:
        before = time.time()
        assert push(collector, token) == 204
        after = time.time()
        assert collector.stop(signal.SIGTERM) == 0
    saved = json.loads((tmp_path / "state" / "last-push.json").read_text())
    assert before <= saved["last_push"]["hco-0007"] <= after
    assert "stopping" in collector.log()
