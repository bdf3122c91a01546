"""MINEDU padrón and RENIPRESS exports into inventory rows (collector/importers.py), and
`kipu-collector inventory convert`; every converted file must load with the real
inventory loader."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from collector.importers import (
    INVENTORY_COLUMNS,
    ConvertOptions,
    convert,
    decode_export,
    header_key,
    sniff_delimiter,
    write_inventory_csv,
)
from collector.inventory import Inventory, load_inventory
from tests.collector_process import run_collector_cli

# A padrón export as ESCALE writes it (a subset of its columns, in its order).
PADRON = (
    "COD_MOD,ANEXO,CODLOCAL,CEN_EDU,NIV_MOD,D_NIV_MOD,CODGEO,D_DPTO,D_PROV,D_DIST,"
    "NLAT_IE,NLONG_IE,ESTADO,D_ESTADO\n"
    "0123456,0,123401,30012 RACRACALLA,B0,Primaria,120206,JUNIN,CONCEPCION,COMAS,"
    "-11.920000,-75.310000,1,Activa\n"
    "123457,0,123402,SANTA ROSA,F0,Secundaria,120206,JUNIN,CONCEPCION,COMAS,,,1,Activa\n"
    "0123458,1,123403,MONZÓN,A2,Inicial - Jardín,100507,HUANUCO,HUAMALIES,MONZON,"
    "-9.28,-76.39,1,Activa\n"
    "0123459,0,123404,ESCUELA PERDIDA,B0,Primaria,129999,JUNIN,X,Y,,,1,Activa\n"
    "0123460,0,123405,CERRADA,B0,Primaria,120206,JUNIN,CONCEPCION,COMAS,,,2,Inactiva\n"
    "0234567,0,123406,AMAZONAS,B0,Primaria,10101,AMAZONAS,CHACHAPOYAS,CHACHAPOYAS,,,1,Activa\n"
)

# The open-data RENIPRESS file: ';'-separated, UTF-8 with a BOM, NORTE/ESTE in degrees.
RENIPRESS = (
    "\ufeffINSTITUCION;COD_IPRESS;NOMBRE;CLASIFICACION;TIPO_ESTABLECIMIENTO;DEPARTAMENTO;"
    "PROVINCIA;DISTRITO;UBIGEO;DIRECCION;CATEGORIA;ESTADO;NORTE;ESTE\n"
    "GOBIERNO REGIONAL;00001234;PUESTO DE SALUD COMAS;PUESTOS DE SALUD;ESTABLECIMIENTO DE "
    "SALUD SIN INTERNAMIENTO;JUNIN;CONCEPCION;COMAS;120206;JR. LIMA S/N;I-2;ACTIVADO;"
    "-11,7166;-75,1333\n"
    "GOBIERNO REGIONAL;5678;PUESTO DE SALUD MONZÓN;PUESTOS DE SALUD;ESTABLECIMIENTO DE "
    "SALUD SIN INTERNAMIENTO;HUANUCO;HUAMALIES;MONZON;100507;;0;ACTIVADO;;\n"
    "GOBIERNO REGIONAL;00009999;CENTRO DE SALUD UTM;CENTROS DE SALUD;X;JUNIN;HUANCAYO;"
    "HUANCAYO;120101;;I-3;ACTIVADO;8680000;480000\n"
)

OPTIONS = ConvertOptions(project="junin", upstream_node="nodo-concepcion", access_tech="microwave")


def _load(rows: tuple[dict[str, str], ...], tmp_path: Path) -> Inventory:
    """The rows through the real inventory loader, as the collector will read them."""
    out = io.StringIO()
    write_inventory_csv(rows, out)
    path = tmp_path / "sites.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return load_inventory(path)


def test_padron_rows_become_sites(tmp_path: Path) -> None:
    result = convert(PADRON, "minedu", OPTIONS, "padron.csv")

    assert result.read == 6
    inventory = _load(result.rows, tmp_path)
    assert sorted(inventory.sites) == [
        "junin-0123456",
        "junin-0123457",
        "junin-0123458-1",
        "junin-0234567",
    ]
    school = inventory.sites["junin-0123456"]
    assert school.site_name == "30012 RACRACALLA (Primaria)"
    assert (school.region, school.province, school.district) == ("Junín", "Concepción", "Comas")
    assert school.institution_type == "school"
    assert school.institution_code == "0123456"
    assert (school.upstream_node, school.access_tech) == ("nodo-concepcion", "microwave")
    assert (school.latitude, school.longitude) == (-11.92, -75.31)
    # The zero a spreadsheet dropped is back, in the code and in the ubigeo.
    assert inventory.sites["junin-0123457"].institution_code == "0123457"
    assert inventory.sites["junin-0234567"].ubigeo == "010101"
    assert inventory.sites["junin-0234567"].region == "Amazonas"
    # An annex is a service of its own.
    annex = inventory.sites["junin-0123458-1"]
    assert (annex.institution_code, annex.site_name) == ("0123458-1", "MONZÓN (Inicial - Jardín)")


def test_padron_problems_name_their_line(tmp_path: Path) -> None:
    result = convert(PADRON, "minedu", OPTIONS, "padron.csv")

    assert [(p.line, p.key) for p in result.errors] == [(5, "CODGEO")]
    assert "129999" in result.errors[0].message
    assert "row left out" in result.errors[0].message
    assert str(result.errors[0]).startswith("padron.csv:5: CODGEO: ubigeo 129999")
    assert [(p.line, p.key, p.message) for p in result.notes] == [
        (6, "D_ESTADO", "'Inactiva': inactive, skipped")
    ]
    kept = convert(PADRON, "minedu", dataclasses.replace(OPTIONS, include_inactive=True))
    assert "junin-0123460" in {row["site_id"] for row in kept.rows}


def test_renipress_rows_become_health_sites(tmp_path: Path) -> None:
    text, encoding = decode_export(RENIPRESS.encode("utf-8"))
    assert encoding == "utf-8-sig"
    options = ConvertOptions(project="junin", upstream_node="nodo-a", access_tech="4g")

    result = convert(text, "renipress", options, "renipress.csv")

    assert result.errors == ()
    inventory = _load(result.rows, tmp_path)
    comas = inventory.sites["junin-00001234"]
    assert comas.institution_type == "health"
    assert comas.institution_code == "00001234"
    assert comas.site_name == "PUESTO DE SALUD COMAS (I-2)"
    assert (comas.latitude, comas.longitude) == (-11.7166, -75.1333)  # decimal commas
    # Category "0" (not yet categorised) is not shown; the code gets its zeros back.
    monzon = inventory.sites["junin-00005678"]
    assert monzon.site_name == "PUESTO DE SALUD MONZÓN"
    assert monzon.region == "Huánuco"
    # UTM metres are not degrees: coordinates left empty (the district capital's used).
    assert [(p.line, p.key) for p in result.notes] == [(4, "NORTE")]
    utm = inventory.sites["junin-00009999"]
    assert (utm.latitude, utm.longitude) == (-12.07083, -75.20889)


def test_susalud_headers_match_without_accents_or_case(tmp_path: Path) -> None:
    export = (
        "Código Único,Nombre del Establecimiento,Categoría,Ubigeo,Latitud,Longitud\n"
        "1234,P.S. Racracalla,I-1,120206,-11.93,-75.32\n"
    )
    result = convert(export, "renipress", OPTIONS, "susalud.csv")

    assert result.errors == ()
    site = _load(result.rows, tmp_path).sites["junin-00001234"]
    assert site.site_name == "P.S. Racracalla (I-1)"
    assert site.latitude == -11.93


def test_connection_from_columns_or_defaults(tmp_path: Path) -> None:
    export = (
        "COD_MOD,CEN_EDU,CODGEO,upstream_node,Access Tech\n"
        "0000001,A,120206,nodo-comas,satellite\n"
        "0000002,B,120206,,\n"
    )
    without_defaults = convert(export, "minedu", ConvertOptions(project="junin"), "x.csv")
    assert [(p.line, p.key) for p in without_defaults.errors] == [
        (3, "upstream_node"),
        (3, "access_tech"),
    ]
    assert [row["site_id"] for row in without_defaults.rows] == ["junin-0000001"]

    with_defaults = convert(export, "minedu", OPTIONS, "x.csv")
    sites = _load(with_defaults.rows, tmp_path).sites
    assert (sites["junin-0000001"].upstream_node, sites["junin-0000001"].access_tech) == (
        "nodo-comas",
        "satellite",
    )
    assert (sites["junin-0000002"].upstream_node, sites["junin-0000002"].access_tech) == (
        "nodo-concepcion",
        "microwave",
    )


def test_site_prefix_and_repeated_codes() -> None:
    export = "COD_MOD,CEN_EDU,CODGEO\n0000001,A,120206\n0000001,A again,120206\n"
    result = convert(export, "minedu", dataclasses.replace(OPTIONS, site_prefix="jun"), "x.csv")

    assert [row["site_id"] for row in result.rows] == ["jun-0000001"]
    assert [(p.line, p.key) for p in result.errors] == [(3, "site_id")]
    assert "first at line 2" in result.errors[0].message


def test_lines_count_records_that_span_lines() -> None:
    export = 'COD_MOD,CEN_EDU,CODGEO\n0000001,"TWO\nLINES",120206\n0000002,B,999999\n'
    result = convert(export, "minedu", OPTIONS, "x.csv")

    assert [p.line for p in result.errors] == [4]
    assert result.rows[0]["site_name"] == "TWO LINES"


def test_missing_columns_are_named() -> None:
    result = convert("CODIGO,NOMBRE\n1,A\n", "minedu", OPTIONS, "x.csv")

    assert result.rows == ()
    (problem,) = result.errors
    assert problem.line == 1
    assert "cod_mod" in problem.message
    assert "codgeo" in problem.message
    assert "CODIGO, NOMBRE" in problem.message


def test_option_problems() -> None:
    bad = ConvertOptions(project="Junín", upstream_node="nodo a", access_tech="adsl")
    assert len(list(bad.problems())) == 3
    assert list(OPTIONS.problems()) == []


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("COD_MOD", "cod_mod"),
        ("Código Único", "codigo_unico"),
        ("\ufeffNombre del establecimiento ", "nombre_del_establecimiento"),
        ("CATEGORÍA", "categoria"),
    ],
)
def test_header_key(header: str, key: str) -> None:
    assert header_key(header) == key


def test_decoding_and_delimiters() -> None:
    latin = "CEN_EDU\nMONZÓN ÑAUPA\n".encode("cp1252")
    assert decode_export(latin) == ("CEN_EDU\nMONZÓN ÑAUPA\n", "cp1252")
    assert decode_export("\ufeffa".encode())[1] == "utf-8-sig"
    assert decode_export(b"\x81\x8d")[1] == "latin-1"  # bytes cp1252 leaves undefined
    assert sniff_delimiter("A;B;C") == ";"
    assert sniff_delimiter("A,B") == ","
    assert sniff_delimiter("A\tB") == "\t"
    assert sniff_delimiter("A") == ","


def test_cli_converts_a_latin1_padron(tmp_path: Path) -> None:
    export = tmp_path / "padron.csv"
    export.write_bytes(PADRON.replace(",", ";").encode("cp1252"))

    result = run_collector_cli(
        "inventory",
        "convert",
        "--from=minedu",
        "--project=junin",
        "--upstream-node=nodo-concepcion",
        "--access-tech=microwave",
        str(export),
    )

    assert result.returncode == 1, result.stderr  # one row was left out
    assert result.stdout.splitlines()[0] == ",".join(INVENTORY_COLUMNS)
    lines = result.stderr.splitlines()
    assert f"{export}:5: CODGEO: ubigeo 129999" in lines[0]
    assert lines[1] == f"{export}:6: D_ESTADO: 'Inactiva': inactive, skipped"
    assert "4 of 6 rows converted (read as cp1252)" in lines[-1]
    sites = tmp_path / "sites.csv"
    sites.write_text(result.stdout, encoding="utf-8")
    inventory = load_inventory(sites)
    assert inventory.sites["junin-0123458-1"].site_name == "MONZÓN (Inicial - Jardín)"
    assert len(inventory.sites) == 4


def test_cli_exits_0_when_every_row_converts(tmp_path: Path) -> None:
    export = tmp_path / "renipress.csv"
    export.write_bytes(RENIPRESS.encode("utf-8"))

    result = run_collector_cli(
        "inventory",
        "convert",
        "--from=renipress",
        "--project=junin",
        "--upstream-node=nodo-a",
        "--access-tech=4g",
        str(export),
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4  # header and three sites


def test_cli_refuses_bad_options(tmp_path: Path) -> None:
    export = tmp_path / "padron.csv"
    export.write_text(PADRON)

    result = run_collector_cli(
        "inventory", "convert", "--from=minedu", "--project=Junín", str(export)
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert "project 'Junín'" in result.stderr
