"""The inventory: YAML and CSV, every problem at once with file and line, names from INEI."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest

from collector.inventory import load_inventory, parse_inventory
from kipu.config import ConfigError

GOOD_YAML = textwrap.dedent(
    """\
    sites:
      - site_id: jun-0001
        site_name: IE 30012 Racracalla
        project: junin
        ubigeo: "120206"                   # Comas, Concepción; region derived: 12 -> Junín
        institution_type: school
        institution_code: "0123456"
        upstream_node: nodo-concepcion
        access_tech: microwave
        latitude: -11.92
        longitude: -75.31
      - site_id: hco-0007
        site_name: Puesto de Salud Monzón
        project: huanuco
        ubigeo: 100507
        institution_type: health
        upstream_node: nodo-tingo-maria
        access_tech: satellite
        in_service_since: 2026-03-15
        contracted_down_mbps: 12
        contracted_up_mbps: 4
    """
)


def test_yaml_needs_only_the_code() -> None:
    inventory = parse_inventory(GOOD_YAML, "sites.yaml", "yaml")
    comas = inventory.sites["jun-0001"]
    assert (comas.region, comas.province, comas.district) == ("Junín", "Concepción", "Comas")
    assert comas.institution_code == "0123456"
    assert (comas.latitude, comas.longitude) == (-11.92, -75.31)
    monzon = inventory.sites["hco-0007"]
    assert (monzon.region, monzon.province, monzon.district) == ("Huánuco", "Huamalíes", "Monzón")
    assert monzon.in_service_since == datetime.date(2026, 3, 15)
    assert monzon.contracted_down_mbps == 12.0
    # No coordinates in the file: the district capital's, from INEI's list.
    assert monzon.latitude == pytest.approx(-9.28)
    assert inventory.projects() == ["huanuco", "junin"]
    assert inventory.warnings == ()


def test_every_problem_at_once_with_file_and_line() -> None:
    text = textwrap.dedent(
        """\
        sites:
          - site_id: jun-0001
            site_name: A
            project: junin
            ubigeo: "990101"
            institution_type: school
            upstream_node: n1
            access_tech: microwave
          - site_id: jun-0002
            site_name: B
            project: junin
            ubigeo: "120299"
            institution_type: church
            upstream_node: n1
            access_tech: 5g
          - site_id: jun-0001
            site_name: C
            project: Junín
            ubigeo: "12020"
            institution_type: school
            access_tech: fibre
            colour: red
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "sites.yaml", "yaml")
    lines = [str(p) for p in caught.value.problems]
    expected = [
        "sites.yaml:5: sites.0.ubigeo: ubigeo 990101: no department 99",
        "sites.yaml:12: sites.1.ubigeo: ubigeo 120299: no such district in INEI's list (Junín)",
        "sites.yaml:13: sites.1.institution_type: 'church' is not one of",
        "sites.yaml:15: sites.1.access_tech: '5g' is not one of",
        "sites.yaml:16: sites.2.site_id: 'jun-0001' repeats (first at line 2)",
        "sites.yaml:22: sites.2.colour: unknown key",
        "sites.yaml:18: sites.2.project: 'Junín' does not match",
        "sites.yaml:19: sites.2.ubigeo: ubigeo '12020' is not six digits",
        "sites.yaml:16: sites.2.upstream_node: required key is missing",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_csv_with_the_same_columns(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_text(
        "site_id,site_name,project,ubigeo,institution_type,institution_code,upstream_node,"
        "access_tech,latitude,longitude,in_service_since\n"
        "jun-0001,IE 30012 Racracalla,junin,120206,school,0123456,nodo-concepcion,microwave,"
        "-11.92,-75.31,2026-02-01\n"
        '"jun-0002","Posta ""San Juan""",junin,120206,health,,nodo-concepcion,4g,,,\n'
        "\n",
        encoding="utf-8",
    )
    inventory = load_inventory(path)
    assert inventory.sites["jun-0001"].institution_code == "0123456"  # leading zero kept
    assert inventory.sites["jun-0001"].latitude == -11.92
    assert inventory.sites["jun-0002"].site_name == 'Posta "San Juan"'
    assert inventory.sites["jun-0002"].institution_code == ""
    assert inventory.sites["jun-0002"].district == "Comas"


def test_csv_problems_name_the_row_line(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_text(
        "site_id,site_name,project,ubigeo,institution_type,upstream_node,access_tech\n"
        "jun-0001,A,junin,120206,school,n1,microwave\n"
        "jun-0002,B,junin,120206,prison,n1,microwave\n"
        "jun-0001,C,junin,999999,school,n1,fibre\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    lines = [str(p) for p in caught.value.problems]
    assert any(line.startswith(f"{path}:3: row 3.institution_type:") for line in lines), lines
    assert any(line.startswith(f"{path}:4: row 4.site_id: 'jun-0001' repeats") for line in lines)
    assert any(line.startswith(f"{path}:4: row 4.ubigeo:") for line in lines), lines


def test_csv_unknown_column_and_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_text("site_id,site_name,colour\njun-1,A,red\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sites.csv:1: colour: unknown column"):
        load_inventory(path)
    path.write_text(
        "site_id,site_name,project,ubigeo,institution_type,upstream_node,access_tech\n"
        "jun-0001,A,junin\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"sites.csv:2: row 2: 3 cells where the header has 7"):
        load_inventory(path)


def test_doubts_are_warnings_not_errors() -> None:
    text = textwrap.dedent(
        """\
        sites:
          - site_id: jun-0001
            site_name: A
            project: junin
            ubigeo: "120206"
            region: Junin
            province: Huancayo
            institution_type: school
            upstream_node: n1
            access_tech: microwave
            latitude: 11.92
            longitude: -75.31
        """
    )
    inventory = parse_inventory(text, "sites.yaml", "yaml")
    warnings = [str(w) for w in inventory.warnings]
    # "Junin" is INEI's "Junín" without the accent: no warning for it.
    assert warnings == [
        "sites.yaml:7: sites.0.province: 'Huancayo' differs from INEI's 'Concepción' for "
        "ubigeo 120206",
        "sites.yaml:11: sites.0.latitude: 11.92 is outside Peru (latitude -18.6 to 0.2)",
    ]
    assert inventory.sites["jun-0001"].province == "Huancayo"  # the file's word stands


def test_empty_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the inventory"):
        load_inventory(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="expected a list of sites"):
        parse_inventory("sites: 3\n", "sites.yaml", "yaml")
    with pytest.raises(ConfigError, match="the inventory is empty"):
        parse_inventory("", "sites.csv", "csv")


def test_site_info_labels_hold_every_field() -> None:
    site = parse_inventory(GOOD_YAML, "sites.yaml", "yaml").sites["hco-0007"]
    labels = site.info_labels()
    assert labels["region"] == "Huánuco"
    assert labels["upstream_node"] == "nodo-tingo-maria"
    assert labels["in_service_since"] == "2026-03-15"
    assert labels["contracted_down_mbps"] == "12.0"
    assert labels["institution_code"] == ""
