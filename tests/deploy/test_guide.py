"""The operator's guide (docs/guide.es.md, docs/guide.en.md) keeps up with what it
describes: both languages have the same sections, every alert of the rules is explained
in both, every repository path it names exists, and the export columns it lists are the
ones the converter reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from collector.importers import SOURCE_COLUMNS, header_key

ROOT = Path(__file__).resolve().parents[2]
GUIDES = {"es": ROOT / "docs" / "guide.es.md", "en": ROOT / "docs" / "guide.en.md"}
ALERTS = ROOT / "deploy" / "prometheus" / "rules" / "kipu-alerts.yml"


def _text(language: str) -> str:
    return GUIDES[language].read_text(encoding="utf-8")


def _alert_names() -> set[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_both_languages_have_the_same_outline() -> None:
    def outline(text: str) -> list[int]:
        return [len(m.group(1)) for m in re.finditer(r"^(#+) ", text, re.MULTILINE)]

    def code_blocks(text: str) -> int:
        return text.count("\n```") // 2

    assert outline(_text("es")) == outline(_text("en"))
    assert code_blocks(_text("es")) == code_blocks(_text("en"))


@pytest.mark.parametrize("language", list(GUIDES))
def test_every_alert_is_explained(language: str) -> None:
    rows = re.findall(r"^\| (Kipu\w+) \|", _text(language), re.MULTILINE)
    assert set(rows) == _alert_names()
    assert len(rows) == len(set(rows))


@pytest.mark.parametrize("language", list(GUIDES))
def test_named_repository_paths_exist(language: str) -> None:
    paths = set(re.findall(r"`((?:deploy|docs|dashboards|collector)/[^`*\s]+)`", _text(language)))
    assert paths
    for path in paths:
        assert (ROOT / path).exists(), path


COLUMNS_BULLET = {"es": "- **Columnas que se leen**", "en": "- **Columns read**"}


@pytest.mark.parametrize("language", list(GUIDES))
def test_listed_columns_are_read_by_the_converter(language: str) -> None:
    text = _text(language)
    start = text.index(COLUMNS_BULLET[language])
    bullet = text[start : text.index("\n- **", start + 1)]
    listed = {header_key(c) for c in re.findall(r"`([^`]+)`", bullet)}
    known = {
        alias
        for columns in SOURCE_COLUMNS.values()
        for field in (
            "code",
            "name",
            "ubigeo",
            "latitude",
            "longitude",
            "detail",
            "annex",
            "status",
        )
        for alias in getattr(columns, field)
    }
    assert {"cod_mod", "cen_edu", "codgeo", "cod_ipress", "codigo_unico"} <= listed
    assert listed <= known, listed - known
