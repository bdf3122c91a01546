"""Inventory rows from a ministry's list: MINEDU's padrón and SUSALUD's RENIPRESS (pure).

A regional project receives its beneficiaries as spreadsheet exports: schools from
MINEDU's padrón de instituciones educativas (ESCALE), health establishments from the
RENIPRESS registry. `convert` turns such a CSV into rows of kipu's inventory (DESIGN §2):
`site_id` from a prefix and the institution's code, the name, the INEI ubigeo, the
institution type and code, coordinates when the export has usable ones. The export does
not know how a site is connected, so `upstream_node` and `access_tech` come from columns
of those names added to the sheet, else from the options' defaults.

Headers are matched case-insensitively, with or without accents, spaces or underscores
(`Código Único` = `CODIGO_UNICO`). Exports are often Windows-1252 (Latin-1) rather than
UTF-8: `decode_export` tries UTF-8 and falls back. Every row that cannot become a site is
reported with its line and left out; the rest are converted.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO, get_args

from collector.inventory import LATITUDES, LONGITUDES, NODE_PATTERN, PROJECT_PATTERN, AccessTech
from collector.ubigeo import lookup
from kipu.config import Problem

Source = Literal["minedu", "renipress"]
SOURCES: tuple[str, ...] = get_args(Source)
ACCESS_TECHS: tuple[str, ...] = get_args(AccessTech)

#: The inventory columns the converter writes, in this order.
INVENTORY_COLUMNS = (
    "site_id",
    "site_name",
    "project",
    "ubigeo",
    "institution_type",
    "institution_code",
    "upstream_node",
    "access_tech",
    "latitude",
    "longitude",
)


@dataclass(frozen=True)
class Columns:
    """Where a source keeps each value: accepted header names, normalised (see `header_key`)."""

    institution_type: str
    code: tuple[str, ...]
    code_digits: int  # codes are zero-padded to this many digits (spreadsheets drop zeros)
    name: tuple[str, ...]
    ubigeo: tuple[str, ...]
    latitude: tuple[str, ...]
    longitude: tuple[str, ...]
    detail: tuple[str, ...] = ()  # level (schools) or category (health), shown in the name
    annex: tuple[str, ...] = ()
    status: tuple[str, ...] = ()


SOURCE_COLUMNS: Mapping[str, Columns] = {
    # ESCALE's padrón: one row per educational service (código modular + anexo).
    "minedu": Columns(
        institution_type="school",
        code=("cod_mod", "codigo_modular", "cod_modular"),
        code_digits=7,
        name=("cen_edu", "nombre_ie", "nombre_de_la_ie", "institucion_educativa"),
        ubigeo=("codgeo", "ubigeo", "cod_geo"),
        latitude=("nlat_ie", "latitud"),
        longitude=("nlong_ie", "longitud"),
        detail=("d_niv_mod", "nivel_modalidad", "nivel"),
        annex=("anexo",),
        status=("d_estado", "estado"),
    ),
    # The open-data RENIPRESS file (COD_IPRESS, NOMBRE, NORTE/ESTE in degrees) and
    # SUSALUD's own search export (Código Único, Nombre del establecimiento).
    "renipress": Columns(
        institution_type="health",
        code=(
            "cod_ipress",
            "codigo_unico",
            "codigo_unico_ipress",
            "codigo_unico_de_ipress",
            "cod_unico",
            "codigo_ipress",
            "codigo_renipress",
        ),
        code_digits=8,
        name=(
            "nombre",
            "nombre_del_establecimiento",
            "nombre_establecimiento",
            "nombre_de_la_ipress",
            "nombre_ipress",
            "establecimiento",
        ),
        ubigeo=("ubigeo", "cod_ubigeo", "codigo_ubigeo"),
        latitude=("norte", "latitud", "latitude", "lat"),
        longitude=("este", "longitud", "longitude", "lon"),
        detail=("categoria",),
        status=("estado", "condicion"),
    ),
}

# A status (in header_key form) meaning the institution no longer operates: MINEDU's ESTADO 2
# or D_ESTADO "Inactiva"; RENIPRESS states such as "Cancelado" or "Cierre temporal".
_INACTIVE = re.compile(r"^(2$|inactiv|cancel|cerrad|cierre|baja|clausur|suspend)")
_CATEGORY = re.compile(r"^(I{1,3})\s*-?\s*([1-4E])$", re.IGNORECASE)


@dataclass(frozen=True)
class ConvertOptions:
    """What the export does not say: the project, how sites connect, the site_id prefix."""

    project: str
    upstream_node: str | None = None
    access_tech: str | None = None
    site_prefix: str | None = None  # default: the project's name
    include_inactive: bool = False

    def problems(self) -> Iterator[str]:
        """What is wrong with the options themselves (before any row is read)."""
        if not re.fullmatch(PROJECT_PATTERN, self.project):
            yield f"project {self.project!r} must match {PROJECT_PATTERN}"
        if self.site_prefix is not None and not re.fullmatch(PROJECT_PATTERN, self.site_prefix):
            yield f"site prefix {self.site_prefix!r} must match {PROJECT_PATTERN}"
        if self.upstream_node is not None and not re.fullmatch(NODE_PATTERN, self.upstream_node):
            yield f"upstream node {self.upstream_node!r} must match {NODE_PATTERN}"
        if self.access_tech is not None and self.access_tech not in ACCESS_TECHS:
            yield f"access tech {self.access_tech!r} is not one of: {', '.join(ACCESS_TECHS)}"


@dataclass(frozen=True)
class Conversion:
    """The inventory rows (INVENTORY_COLUMNS, text), the rows left out and why (`errors`),
    and what was changed or skipped on purpose (`notes`)."""

    rows: tuple[dict[str, str], ...]
    errors: tuple[Problem, ...]
    notes: tuple[Problem, ...]
    read: int  # data rows read (blank lines aside)


def header_key(header: str) -> str:
    """A header as the converter compares it: no accents, lower case, `_` between words."""
    text = unicodedata.normalize("NFKD", header.lstrip("\ufeff"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def decode_export(data: bytes) -> tuple[str, str]:
    """The text of an export and the encoding it was in: UTF-8 (with or without a BOM),
    else Windows-1252, the usual encoding of Excel's CSV on Spanish Windows, else Latin-1."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV from its header: `;` in RENIPRESS and in Excel's CSV where the
    decimal separator is a comma, `,` elsewhere, sometimes a tab."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def convert(text: str, source: Source, options: ConvertOptions, name: str = "-") -> Conversion:
    """Convert an export's text; `name` is the file named in the problems."""
    columns = SOURCE_COLUMNS[source]
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text), delimiter=sniff_delimiter(first_line))
    try:
        header = next(reader)
    except StopIteration:
        return Conversion((), (Problem(name, 1, "", "the file is empty"),), (), 0)
    index = _column_index(header)
    headers = [h.strip().lstrip("\ufeff") for h in header]
    missing = [
        f"{what} (one of: {', '.join(aliases)})"
        for what, aliases in (
            ("code", columns.code),
            ("name", columns.name),
            ("ubigeo", columns.ubigeo),
        )
        if _find(index, aliases) is None
    ]
    if missing:
        found = ", ".join(h.strip() for h in header)
        message = f"no column for {'; '.join(missing)}; the header has: {found}"
        return Conversion((), (Problem(name, 1, "", message),), (), 0)

    rows: list[dict[str, str]] = []
    errors: list[Problem] = []
    notes: list[Problem] = []
    converter = _RowConverter(columns, options, name, errors, notes)
    first_seen: dict[str, int] = {}
    read = 0
    line = reader.line_num + 1  # where the next record starts
    for record in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        read += 1
        row = converter.convert(_Cells(record, index, headers), start)
        if row is None:
            continue
        site_id = row["site_id"]
        if site_id in first_seen:
            message = f"{site_id} repeats (first at line {first_seen[site_id]}); left out"
            errors.append(Problem(name, start, "site_id", message))
            continue
        first_seen[site_id] = start
        rows.append(row)
    return Conversion(tuple(rows), tuple(errors), tuple(notes), read)


def write_inventory_csv(rows: Sequence[Mapping[str, str]], out: TextIO) -> None:
    """Write rows as an inventory CSV (header row, INVENTORY_COLUMNS)."""
    writer = csv.DictWriter(out, fieldnames=INVENTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


class _Cells:
    """One record's cells by normalised header."""

    def __init__(
        self, record: Sequence[str], index: Mapping[str, int], headers: Sequence[str]
    ) -> None:
        self._record = record
        self._index = index
        self._headers = headers

    def header(self, aliases: Sequence[str]) -> str:
        """The column's name as the file writes it (the first alias when absent)."""
        position = _find(self._index, aliases)
        return aliases[0] if position is None else self._headers[position]

    def get(self, aliases: Sequence[str]) -> str:
        position = _find(self._index, aliases)
        if position is None or position >= len(self._record):
            return ""
        return " ".join(self._record[position].split())


def _column_index(header: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, column in enumerate(header):
        index.setdefault(header_key(column), position)  # the first of repeated headers
    return index


def _find(index: Mapping[str, int], aliases: Sequence[str]) -> int | None:
    for alias in aliases:
        if alias in index:
            return index[alias]
    return None


def _digits(code: str, width: int) -> str:
    """A numeric code with the zeros a spreadsheet dropped put back (`123456.0` too)."""
    if re.fullmatch(r"\d+\.0+", code):
        code = code.split(".", 1)[0]
    return code.zfill(width) if code.isdigit() and len(code) < width else code


@dataclass
class _RowConverter:
    """Converts one record after another, collecting what went wrong."""

    columns: Columns
    options: ConvertOptions
    name: str
    errors: list[Problem]
    notes: list[Problem]

    def convert(self, cells: _Cells, line: int) -> dict[str, str] | None:
        columns, options = self.columns, self.options
        problems_before = len(self.errors)

        def error(key: str, message: str) -> None:
            self.errors.append(Problem(self.name, line, key, message))

        code = _digits(cells.get(columns.code), columns.code_digits)
        site_name = cells.get(columns.name)
        if not code:
            error(cells.header(columns.code), "no institution code; row left out")
        if not site_name:
            error(cells.header(columns.name), "no name; row left out")
        status = cells.get(columns.status)
        if status and _INACTIVE.match(header_key(status)) and not options.include_inactive:
            message = f"{status!r}: inactive, skipped"
            self.notes.append(Problem(self.name, line, cells.header(columns.status), message))
            return None
        ubigeo = _digits(cells.get(columns.ubigeo), 6)
        try:
            lookup(ubigeo)
        except ValueError as err:
            error(cells.header(columns.ubigeo), f"{err}; row left out")
        upstream = cells.get(("upstream_node",)) or options.upstream_node or ""
        if not upstream:
            error("upstream_node", "no upstream node: add an upstream_node column or a default")
        elif not re.fullmatch(NODE_PATTERN, upstream):
            error("upstream_node", f"{upstream!r} must match {NODE_PATTERN}")
        access = cells.get(("access_tech",)).lower() or options.access_tech or ""
        if not access:
            error("access_tech", "no access tech: add an access_tech column or a default")
        elif access not in ACCESS_TECHS:
            error("access_tech", f"{access!r} is not one of: {', '.join(ACCESS_TECHS)}")
        if len(self.errors) > problems_before:
            return None

        identity = code
        annex = cells.get(columns.annex)
        if annex and annex not in ("0", "00"):
            identity = f"{code}-{annex}"
        prefix = options.site_prefix or options.project
        site_id = f"{prefix}-{re.sub(r'[^a-z0-9_.-]+', '-', identity.lower()).strip('-')}"
        detail = _detail(cells.get(columns.detail), columns)
        latitude, longitude = self._coordinates(cells, line)
        return {
            "site_id": site_id,
            "site_name": f"{site_name} ({detail})" if detail else site_name,
            "project": options.project,
            "ubigeo": ubigeo,
            "institution_type": columns.institution_type,
            "institution_code": identity,
            "upstream_node": upstream,
            "access_tech": access,
            "latitude": latitude,
            "longitude": longitude,
        }

    def _coordinates(self, cells: _Cells, line: int) -> tuple[str, str]:
        """Latitude and longitude as text, or empty (the inventory then takes the district
        capital's) when absent, zero, unreadable or outside Peru."""
        key = cells.header(self.columns.latitude)
        raw_lat, raw_lon = cells.get(self.columns.latitude), cells.get(self.columns.longitude)
        if not raw_lat and not raw_lon:
            return "", ""
        try:
            latitude = float(raw_lat.replace(",", "."))
            longitude = float(raw_lon.replace(",", "."))
        except ValueError:
            message = f"coordinates {raw_lat!r}, {raw_lon!r} are not numbers; left empty"
            self.notes.append(Problem(self.name, line, key, message))
            return "", ""
        if latitude == 0 and longitude == 0:
            return "", ""
        inside = (
            LATITUDES[0] <= latitude <= LATITUDES[1] and LONGITUDES[0] <= longitude <= LONGITUDES[1]
        )
        if not inside:
            message = (
                f"coordinates {latitude}, {longitude} are outside Peru (not decimal degrees, "
                "or swapped); left empty"
            )
            self.notes.append(Problem(self.name, line, key, message))
            return "", ""
        return _decimal(latitude), _decimal(longitude)


def _decimal(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _detail(value: str, columns: Columns) -> str:
    """The school's level, or the health establishment's category when it has one (RENIPRESS
    writes `0` for an establishment not yet categorised)."""
    if columns.institution_type != "health":
        return value
    match = _CATEGORY.match(value)
    return f"{match.group(1).upper()}-{match.group(2).upper()}" if match else ""
