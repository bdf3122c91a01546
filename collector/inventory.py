"""The site inventory (DESIGN §2): every institution a collector knows, from YAML or CSV.

A YAML inventory is a `sites:` list of mappings; a CSV inventory has a header row with
the same column names. Every row is validated and every problem reported at once as
``FILE:LINE: key: message``: a bad or unknown ubigeo, a repeated site_id, an unknown
institution type or access technology. Region, province and district come from the
ubigeo by INEI's list (`collector.ubigeo`), so a row needs only the code; names given
in the file are kept, with a warning when they differ from INEI's. A site outside
Peru's bounding box is a warning, not an error (coordinates are often typed by hand).
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import yaml

from collector.ubigeo import District, lookup, same_name
from kipu.config import ConfigError, Problem, Validated, load_node, setting
from kipu.config.checks import SITE_ID_PATTERN

InstitutionType = Literal["school", "health", "police", "plaza_wifi", "other"]
AccessTech = Literal["fibre", "microwave", "radio", "4g", "satellite", "satellite_leo", "other"]
INSTITUTION_TYPES: tuple[str, ...] = ("school", "health", "police", "plaza_wifi", "other")
PROJECT_PATTERN = r"[a-z0-9][a-z0-9_-]*"
NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
# Peru, with a margin: Tumbes to Tacna, the Pacific coast to the Amazon.
LATITUDES = (-18.6, 0.2)
LONGITUDES = (-81.6, -68.4)


def _date_problem(text: str) -> str | None:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return f"{text!r} is not a date (write YYYY-MM-DD)"
    return None


def _ubigeo_problem(code: str) -> str | None:
    try:
        lookup(code)
    except ValueError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class SiteRow(Validated):
    """One row as written in the inventory file."""

    site_id: str = setting(
        doc="The site's identifier, as its agent knows it.", pattern=SITE_ID_PATTERN
    )
    site_name: str = setting(doc="The institution's name.")
    project: str = setting(doc="The regional project.", pattern=PROJECT_PATTERN)
    ubigeo: str = setting(doc="INEI district code, six digits.", check=_ubigeo_problem)
    institution_type: InstitutionType = setting(doc="school, health, police, plaza_wifi, other.")
    upstream_node: str = setting(
        doc="The access or backbone node the site hangs from.", pattern=NODE_PATTERN
    )
    access_tech: AccessTech = setting(doc="How the site is connected.")
    institution_code: str = setting("", doc="MINEDU código modular, RENIPRESS code, ...")
    latitude: float | None = setting(None, doc="Degrees north (negative in Peru).")
    longitude: float | None = setting(None, doc="Degrees east (negative in Peru).")
    region: str | None = setting(None, doc="Department; from the ubigeo when absent.")
    province: str | None = setting(None, doc="Province; from the ubigeo when absent.")
    district: str | None = setting(None, doc="District; from the ubigeo when absent.")
    in_service_since: str | None = setting(
        None, doc="Date the service started (YYYY-MM-DD).", check=_date_problem
    )
    contracted_down_mbps: float | None = setting(
        None, doc="Contracted download speed.", exclusive_minimum=0
    )
    contracted_up_mbps: float | None = setting(
        None, doc="Contracted upload speed.", exclusive_minimum=0
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if (self.latitude is None) != (self.longitude is None):
            yield "latitude", "give both latitude and longitude, or neither"


ROW_FIELDS = tuple(f.name for f in fields(SiteRow))


@dataclass(frozen=True)
class Site:
    """A site as the collector uses it: names resolved, every field present."""

    site_id: str
    site_name: str
    project: str
    region: str
    province: str
    district: str
    ubigeo: str
    institution_type: str
    institution_code: str
    upstream_node: str
    access_tech: str
    latitude: float | None
    longitude: float | None
    in_service_since: datetime.date | None = None
    contracted_down_mbps: float | None = None
    contracted_up_mbps: float | None = None

    def info_labels(self) -> dict[str, str]:
        """The labels of `kipu_site_info`: every inventory field, as text."""
        labels: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            labels[f.name] = "" if value is None else str(value)
        return labels


@dataclass(frozen=True)
class Inventory:
    """Every site, by site_id (in site_id order); `warnings` are problems that did not
    stop loading."""

    sites: dict[str, Site]
    warnings: tuple[Problem, ...] = ()

    def projects(self) -> list[str]:
        return sorted({site.project for site in self.sites.values()})


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory (.yaml, .yml or .csv); ConfigError lists every problem."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([Problem(name, 0, "", f"cannot read the inventory: {err}")]) from err
    if path.suffix.lower() == ".csv":
        rows = list(_csv_rows(text, name))
    else:
        rows = list(_yaml_rows(text, name))
    return _validate(rows, name)


def parse_inventory(text: str, name: str, kind: Literal["yaml", "csv"]) -> Inventory:
    """Like `load_inventory`, from text (`name` is the file named in messages)."""
    rows = list(_csv_rows(text, name) if kind == "csv" else _yaml_rows(text, name))
    return _validate(rows, name)


def _yaml_rows(text: str, name: str) -> Iterator[tuple[str, yaml.Node]]:
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([Problem(name, line, "", f"not valid YAML: {err.problem}")]) from err
    sites = None
    if isinstance(document, yaml.MappingNode):
        for key_node, value_node in document.value:
            if key_node.value == "sites":
                sites = value_node
            else:
                line = key_node.start_mark.line + 1
                message = "unknown key (an inventory holds one key, sites)"
                raise ConfigError([Problem(name, line, str(key_node.value), message)])
    if not isinstance(sites, yaml.SequenceNode):
        line = document.start_mark.line + 1 if document is not None else 1
        raise ConfigError([Problem(name, line, "sites", "expected a list of sites under sites:")])
    for index, node in enumerate(sites.value):
        yield f"sites.{index}", node


def _csv_rows(text: str, name: str) -> Iterator[tuple[str, yaml.Node]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError([Problem(name, 1, "", "the inventory is empty")]) from None
    header = [column.strip() for column in header]
    unknown = [c for c in header if c not in ROW_FIELDS]
    if unknown:
        known = ", ".join(ROW_FIELDS)
        problems = [Problem(name, 1, c, f"unknown column (known: {known})") for c in unknown]
        raise ConfigError(problems)
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            message = f"{len(row)} cells where the header has {len(header)} columns"
            raise ConfigError([Problem(name, line, f"row {line}", message)])
        mark = yaml.Mark(name, 0, line - 1, 0, "", 0)
        pairs = []
        for column, cell in zip(header, row, strict=True):
            value = cell.strip()
            if not value:
                continue  # an empty cell is an absent field
            key = yaml.ScalarNode("tag:yaml.org,2002:str", column, mark, mark)
            tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            pairs.append((key, yaml.ScalarNode(tag, value, mark, mark)))
        yield f"row {line}", yaml.MappingNode("tag:yaml.org,2002:map", pairs, mark, mark)


_RESOLVER = yaml.resolver.Resolver()


def _validate(rows: list[tuple[str, yaml.Node]], name: str) -> Inventory:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    sites: dict[str, Site] = {}
    first_line: dict[str, int] = {}
    for key, node in rows:
        line = node.start_mark.line + 1
        # A repeated site_id is reported even when the row has other problems.
        site_id = _scalar(node, "site_id")
        if site_id is not None and site_id in first_line:
            message = f"{site_id!r} repeats (first at line {first_line[site_id]})"
            problems.append(Problem(name, line, f"{key}.site_id", message))
        elif site_id is not None:
            first_line[site_id] = line
        try:
            row = load_node(SiteRow, node, name, key)
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        if row.site_id in sites:
            continue  # reported above
        district = lookup(row.ubigeo)
        sites[row.site_id] = _resolve(row, district)
        warnings.extend(
            Problem(name, _key_line(node, field) or line, f"{key}.{field}", message)
            for field, message in _doubts(row, district)
        )
    if problems:
        raise ConfigError(problems)
    return Inventory(dict(sorted(sites.items())), tuple(warnings))


def _key_line(node: yaml.Node, key: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == key:
                return int(key_node.start_mark.line) + 1
    return None


def _scalar(node: yaml.Node, key: str) -> str | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key and isinstance(value_node, yaml.ScalarNode):
                return str(value_node.value)
    return None


def _resolve(row: SiteRow, district: District) -> Site:
    latitude, longitude = row.latitude, row.longitude
    if latitude is None:
        latitude, longitude = district.latitude, district.longitude
    since = datetime.date.fromisoformat(row.in_service_since) if row.in_service_since else None
    return Site(
        site_id=row.site_id,
        site_name=row.site_name,
        project=row.project,
        region=row.region or district.department,
        province=row.province or district.province,
        district=row.district or district.district,
        ubigeo=row.ubigeo,
        institution_type=row.institution_type,
        institution_code=row.institution_code,
        upstream_node=row.upstream_node,
        access_tech=row.access_tech,
        latitude=latitude,
        longitude=longitude,
        in_service_since=since,
        contracted_down_mbps=row.contracted_down_mbps,
        contracted_up_mbps=row.contracted_up_mbps,
    )


def _doubts(row: SiteRow, district: District) -> Iterator[tuple[str, str]]:
    for field, given, official in (
        ("region", row.region, district.department),
        ("province", row.province, district.province),
        ("district", row.district, district.district),
    ):
        if given is not None and not same_name(given, official):
            yield field, f"{given!r} differs from INEI's {official!r} for ubigeo {row.ubigeo}"
    if row.latitude is not None and row.longitude is not None:
        if not LATITUDES[0] <= row.latitude <= LATITUDES[1]:
            yield "latitude", f"{row.latitude} is outside Peru (latitude -18.6 to 0.2)"
        if not LONGITUDES[0] <= row.longitude <= LONGITUDES[1]:
            yield "longitude", f"{row.longitude} is outside Peru (longitude -81.6 to -68.4)"
