"""The monthly SLA report and the panel, end to end: a synthetic October 2026 pushed
through a real collector's write endpoint, every figure checked against values worked
out by hand, under each SLA option (changed by reload), through the API and the CLI.

The month (America/Lima, UTC-5, 744 hours from 2026-10-01T00:00-05:00); hour h is
START + h hours; every site pushes one sample an hour unless told otherwise:

- jun-0001 (school): down from hour 100 to 103 (one outage); a maintenance window from
  hour 102 to 104 covers part of it. Up 740, down 2, maintenance 2.
- jun-0002 (health): a power cut with no samples from hour 200 to 206 (the agent counts
  5.5 h offline and 0.5 h up at its restart); at hour 410, after ten hours without a
  sample, its counters start again from zero (state lost: 1 h up since). Up 729.5,
  power off 5.5, unknown 9.
- jun-0003 (police): in service from 2026-10-16 (hour 360); its agent reports from
  hour 370. Period 384, up 374, unknown 10.
- jun-0004 (health): never reports. Unknown 744.
- hco-0007 (health, Huánuco): first only hours 0 to 372; the rest arrives late, as
  backfill, after the first report, with ten hours down from hour 500.
"""

from __future__ import annotations

import base64
import signal
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.config import load_maintenance
from collector.ledger import LEDGER_DIR, month_bounds
from kipu.config import ConfigError
from kipu.remote_write.codec import Sample, Series, encode, normalise_labels
from tests.collector.pushing import post_write
from tests.collector_process import (
    CollectorProcess,
    issue_token,
    run_collector_cli,
    write_collector,
)
from tests.metrics_util import wait_until

H = 3600.0
START, END = month_bounds("2026-10", "America/Lima")

SITES = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012, project: junin, ubigeo: "120206",
         institution_type: school, institution_code: "0123456", upstream_node: nodo-a,
         access_tech: microwave}
      - {site_id: jun-0002, site_name: PS Comas, project: junin, ubigeo: "120206",
         institution_type: health, upstream_node: nodo-a, access_tech: 4g}
      - {site_id: jun-0003, site_name: Comisaria, project: junin, ubigeo: "120206",
         institution_type: police, upstream_node: nodo-b, access_tech: satellite,
         in_service_since: "2026-10-16"}
      - {site_id: jun-0004, site_name: PS Nuevo, project: junin, ubigeo: "120206",
         institution_type: health, upstream_node: nodo-d, access_tech: 4g}
      - {site_id: hco-0007, site_name: PS Monzon, project: huanuco, ubigeo: "100507",
         institution_type: health, upstream_node: nodo-c, access_tech: satellite}
    """
)
MAINTENANCE = textwrap.dedent(
    """\
    windows:
      - {site_id: jun-0001, start: "2026-10-05T06:00:00-05:00", end: "2026-10-05T08:00:00-05:00",
         reason: cambio de radio}
      # Before jun-0003 was in service: no effect.
      - {upstream_node: nodo-b, start: "2026-10-08T00:00:00-05:00",
         end: "2026-10-09T00:00:00-05:00", reason: nodo}
      # Outside the month: no effect.
      - {region: Huánuco, start: "2026-11-03T00:00:00-05:00", end: "2026-11-04T00:00:00-05:00"}
      - {project: junin, start: "2026-09-03T00:00:00-05:00", end: "2026-09-04T00:00:00-05:00"}
    """
)
LIMITS = "limits: {max_samples_per_second_per_site: 1000000}\n"
MAINTENANCE_KEY = "maintenance: maintenance.yaml\n"

# (up, down, offline, outages) hours at hour h of the month, per site.
Counters = tuple[float, float, float, float]


def jun_0001(h: int) -> Counters:
    if h <= 100:
        return h, 0, 0, 0
    if h <= 103:
        return 100, h - 100, 0, 1
    return h - 3, 3, 0, 1


def jun_0002(h: int) -> Counters | None:
    if h <= 200:
        return h, 0, 0, 0
    if h < 206:
        return None  # the power cut: nothing
    if h == 206:
        return 200.5, 0, 5.5, 0
    if h <= 400:
        return h - 5.5, 0, 5.5, 0
    if h < 410:
        return None  # lost
    return h - 409, 0, 0, 0  # counters from zero again


def jun_0003(h: int) -> Counters | None:
    return None if h < 370 else (h - 370, 0, 0, 0)


def hco_0007(h: int) -> Counters:
    if h <= 500:
        return h, 0, 0, 0
    if h <= 510:
        return 500, h - 500, 0, 1
    return h - 10, 10, 0, 1


def body(counters: Callable[[int], Counters | None], hours: range, extra: bool = False) -> bytes:
    """A remote-write body with the site's samples of `hours` (extra: WiFi, traffic)."""
    names = (
        "kipu_link_up_seconds_total",
        "kipu_link_down_seconds_total",
        "kipu_agent_offline_seconds_total",
        "kipu_link_outages_total",
    )
    found: dict[Series, list[Sample]] = {}
    for h in hours:
        values = counters(h)
        if values is None:
            continue
        stamp = round((START + h * H) * 1000)
        for name, value in zip(names, values, strict=True):
            scale = 1.0 if name == "kipu_link_outages_total" else H
            found.setdefault(normalise_labels({"__name__": name}), []).append(
                (stamp, value * scale)
            )
        if extra:
            for name, value, labels in (
                ("kipu_wifi_unique_clients", h % 24 + 1.0, {"device": "ap"}),
                ("kipu_interface_receive_bytes_total", h * 1e9, {"interface": "wan"}),
                ("kipu_interface_transmit_bytes_total", h * 0.5e9, {"interface": "wan"}),
            ):
                series = normalise_labels({"__name__": name, **labels})
                found.setdefault(series, []).append((stamp, value))
    return encode(found)


def site_fields(site_id: str) -> list[str]:
    fields = {
        "jun-0001": "IE 30012,junin,Junín,Concepción,Comas,120206,school,0123456,microwave",
        "jun-0002": "PS Comas,junin,Junín,Concepción,Comas,120206,health,,4g",
        "jun-0003": "Comisaria,junin,Junín,Concepción,Comas,120206,police,,satellite",
        "jun-0004": "PS Nuevo,junin,Junín,Concepción,Comas,120206,health,,4g",
        "hco-0007": "PS Monzon,huanuco,Huánuco,Huamalíes,Monzón,100507,health,,satellite",
    }
    return [site_id, *fields[site_id].split(",")]


HEADER = (
    "site_id,site_name,project,region,province,district,ubigeo,institution_type,"
    "institution_code,access_tech,period_hours,up_hours,down_hours,power_off_hours,"
    "maintenance_hours,unknown_hours,availability_percent,outages,target_percent,meets_target"
)
# period, up, down, power_off, maintenance, unknown, outages; then by option:
# availability, target, meets.
FIGURES = {
    "hco-0007": "744.000,734.000,10.000,0.000,0.000,0.000,1",
    "jun-0001": "744.000,740.000,2.000,0.000,2.000,0.000,1",
    "jun-0002": "744.000,729.500,0.000,5.500,0.000,9.000,0",
    "jun-0003": "384.000,374.000,0.000,0.000,0.000,10.000,0",
    "jun-0004": "744.000,0.000,0.000,0.000,0.000,744.000,0",
}
DEFAULT = {  # exclude_power_cuts: true, unknown_as: down; junin 98.5, else 99
    "hco-0007": "98.656,99,false",  # 734 / 744
    "jun-0001": "99.730,98.5,true",  # 740 / (744 - 2)
    "jun-0002": "98.781,98.5,true",  # 729.5 / (744 - 5.5)
    "jun-0003": "97.396,98.5,false",  # 374 / 384
    "jun-0004": "0.000,98.5,false",
}


def expected_rows(verdicts: dict[str, str], figures: dict[str, str] = FIGURES) -> list[str]:
    rows = [HEADER]
    for site_id in sorted(verdicts):
        period, up, down, off, maint, unknown, outages = figures[site_id].split(",")
        availability, target, meets = verdicts[site_id].split(",")
        values = [*site_fields(site_id), period, up, down, off, maint, unknown]
        values += [availability, outages, target, meets]
        rows.append(",".join(values))
    return rows


def config_text(sla: str) -> str:
    return LIMITS + MAINTENANCE_KEY + sla


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), err.read(), err.headers["Content-Type"]


def report(collector: CollectorProcess, path: str = "sla", **query: str) -> list[str]:
    status, data, kind = get(
        f"{collector.url}/api/v1/reports/{path}?{urllib.parse.urlencode(query)}"
    )
    assert status == 200, data
    assert kind.startswith("text/csv")
    return data.decode("utf-8").splitlines()


def reload(collector: CollectorProcess, config: Path, sla: str) -> None:
    config.write_text(config.read_text().split(LIMITS)[0] + LIMITS + MAINTENANCE_KEY + sla)
    request = urllib.request.Request(f"{collector.url}/-/reload", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.fixture
def noc(tmp_path: Path) -> Iterator[tuple[CollectorProcess, Path, dict[str, str]]]:
    (tmp_path / "maintenance.yaml").write_text(MAINTENANCE)
    config = write_collector(
        tmp_path,
        config_text("sla: {projects: {junin: {target_percent: 98.5}}}\n"),
        sites=SITES,
    )
    tokens = {s: issue_token(config, s) for s in ("jun-0001", "jun-0002", "jun-0003", "hco-0007")}
    collector = CollectorProcess(config, tmp_path / "collector.log")
    try:
        collector.start()
        yield collector, config, tokens
    finally:
        collector.stop()


def push(collector: CollectorProcess, token: str, data: bytes) -> None:
    status, text = post_write(collector.write_url, token, data, timeout=60)
    assert status == 204, text


def test_a_synthetic_month_gives_every_figure_worked_out_by_hand(
    noc: tuple[CollectorProcess, Path, dict[str, str]],
) -> None:
    collector, config, tokens = noc
    month = range(745)  # hour 744 is 2026-11-01T00:00-05:00: it closes October
    push(collector, tokens["jun-0001"], body(jun_0001, month, extra=True))
    push(collector, tokens["jun-0002"], body(jun_0002, month))
    push(collector, tokens["jun-0003"], body(jun_0003, month))
    push(collector, tokens["hco-0007"], body(hco_0007, range(373)))

    # Before the backfill: hco-0007 is known up to hour 372 only.
    early = dict(DEFAULT, **{"hco-0007": "50.000,99,false"})
    figures = dict(FIGURES, **{"hco-0007": "744.000,372.000,0.000,0.000,0.000,372.000,0"})
    assert report(collector, month="2026-10") == expected_rows(early, figures)

    push(collector, tokens["hco-0007"], body(hco_0007, range(373, 745)))
    assert report(collector, month="2026-10") == expected_rows(DEFAULT)
    junin = {k: v for k, v in DEFAULT.items() if k.startswith("jun")}
    assert report(collector, month="2026-10", project="junin") == expected_rows(junin)

    # unknown_as: excluded. Nothing left to measure of jun-0004: no verdict.
    reload(collector, config, "sla: {default: {unknown_as: excluded}}\n")
    assert report(collector, month="2026-10") == expected_rows(
        {
            "hco-0007": "98.656,99,false",
            "jun-0001": "99.730,99,true",
            "jun-0002": "100.000,99,true",  # 729.5 / (744 - 5.5 - 9)
            "jun-0003": "100.000,99,true",  # 374 / (384 - 10)
            "jun-0004": ",99,",
        }
    )
    # Power cuts count against the operator; huanuco's own target.
    reload(
        collector,
        config,
        "sla:\n  default: {exclude_power_cuts: false, target_percent: 98}\n"
        "  projects: {huanuco: {target_percent: 98.6}}\n",
    )
    assert report(collector, month="2026-10") == expected_rows(
        {
            "hco-0007": "98.656,98.6,true",
            "jun-0001": "99.730,98,true",
            "jun-0002": "98.051,98,true",  # 729.5 / 744
            "jun-0003": "97.396,98,false",
            "jun-0004": "0.000,98,false",
        }
    )

    # The same from the command line, reading the ledger the collector saved.
    result = run_collector_cli(
        "report", "sla", f"--config.file={config}", "--month=2026-10", "--project=huanuco"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_rows({"hco-0007": "98.656,98.6,true"})

    # The panel: one row per department, month and institution type.
    assert report(collector, "panel", **{"from": "2026-09", "to": "2026-10"}) == [
        "department_ubigeo,department,month,institution_type,sites_inventoried,"
        "sites_connected,sites_reporting,availability_percent,wifi_client_days,"
        "traffic_gigabytes",
        "10,Huánuco,2026-09,health,1,0,0,,0,0.000",
        "12,Junín,2026-09,school,1,0,0,,0,0.000",
        "12,Junín,2026-09,health,2,0,0,,0,0.000",
        "12,Junín,2026-09,police,0,0,0,,0,0.000",
        "10,Huánuco,2026-10,health,1,1,1,98.656,0,0.000",
        # 740 / 744 with power cuts not excluded (jun-0001's 2 maintenance hours out)
        "12,Junín,2026-10,school,1,1,1,99.730,744,1116.000",
        # jun-0004 never connected: out of the availability
        "12,Junín,2026-10,health,2,1,1,98.051,0,0.000",
        "12,Junín,2026-10,police,1,1,1,97.396,0,0.000",
    ]


def test_the_ledger_survives_a_kill_and_a_restart(
    noc: tuple[CollectorProcess, Path, dict[str, str]],
) -> None:
    collector, config, tokens = noc
    push(collector, tokens["jun-0001"], body(jun_0001, range(745), extra=True))
    # The saver writes within SAVE_INTERVAL seconds, without being asked.
    ledger = config.parent / "state" / LEDGER_DIR
    wait_until((ledger / "2026-11.journal").exists, timeout=60)  # the later of the two
    collector.stop(signal.SIGKILL)
    collector.start()
    rows = report(collector, month="2026-10", project="junin")
    assert rows[:2] == expected_rows({"jun-0001": DEFAULT["jun-0001"]})


def test_bad_requests_are_refused_with_the_reason(
    noc: tuple[CollectorProcess, Path, dict[str, str]],
) -> None:
    collector, config, _ = noc
    # A bad maintenance file refuses the reload, naming its line; the old one stays.
    (config.parent / "maintenance.yaml").write_text("windows:\n  - {site_id: jun-0001}\n")
    request = urllib.request.Request(f"{collector.url}/-/reload", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value:
        assert refused.value.code == 400
        assert "maintenance.yaml:2: windows.0.start: required" in refused.value.read().decode()
    for query, reason in (
        ("month=2026-13", "not a month"),
        ("month=2026-10&project=nowhere", "no project"),
        ("month=2026-10&format=xls", "format"),
        ("month=2026-10&colour=red", "colour"),
    ):
        status, data, _ = get(f"{collector.url}/api/v1/reports/sla?{query}")
        assert (status, reason in data.decode()) == (400, True), data
    status, data, _ = get(f"{collector.url}/api/v1/reports/panel?from=2026-10&to=2026-09")
    assert status == 400
    assert b"before" in data


def test_viewers_see_only_their_projects(tmp_path: Path) -> None:
    from collector.web.viewers import hash_password  # noqa: PLC0415

    secret = hash_password("clave", n=2**10)
    viewers = f"viewers:\n  - {{name: ana, password_hash: '{secret}', projects: [huanuco]}}\n"
    config = write_collector(tmp_path, LIMITS + viewers, sites=SITES)
    token = issue_token(config, "hco-0007")
    collector = CollectorProcess(config, tmp_path / "collector.log")
    try:
        collector.start()
        push(collector, token, body(hco_0007, range(745)))
        url = f"{collector.url}/api/v1/reports/sla?month=2026-10"
        assert get(url)[0] == 401
        ana = {"Authorization": "Basic " + base64.b64encode(b"ana:clave").decode()}
        status, data, _ = get(url, ana)
        assert status == 200
        assert [line.split(",")[0] for line in data.decode().splitlines()] == [
            "site_id",
            "hco-0007",
        ]
        status, data, _ = get(url + "&project=junin", ana)
        assert status == 400
        assert b"no project 'junin'" in data
    finally:
        collector.stop()


def test_a_bad_maintenance_file_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "maintenance.yaml"
    path.write_text(
        "windows:\n"
        "  - {site_id: jun-0001, start: 2026-10-05T06:00:00-05:00, end: yesterday}\n"
        "  - {start: '2026-10-05T06:00:00-05:00', end: '2026-10-05T07:00:00-05:00'}\n"
    )
    with pytest.raises(ConfigError) as failed:
        load_maintenance(path)
    messages = [str(p) for p in failed.value.problems]
    assert any(m.startswith(f"{path}:2: windows.0.end:") for m in messages), messages
    assert any(m.startswith(f"{path}:3: windows.1") and "exactly one" in m for m in messages)
    config = write_collector(tmp_path, MAINTENANCE_KEY, sites=SITES)
    result = run_collector_cli(f"--config.file={config}", "--check-config")
    assert result.returncode == 1
    assert "windows.0.end" in result.stderr
