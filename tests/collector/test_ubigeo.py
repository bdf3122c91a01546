"""INEI's district list, checked against codes we know."""

from __future__ import annotations

import pytest

from collector.ubigeo import departments, districts, lookup, same_name


def test_the_list_is_inei_2025() -> None:
    assert len(districts()) == 1893
    assert len(departments()) == 25
    assert departments()["01"] == "Amazonas"
    assert departments()["12"] == "Junín"
    assert departments()["25"] == "Ucayali"


@pytest.mark.parametrize(
    ("code", "department", "province", "district"),
    [
        ("120206", "Junín", "Concepción", "Comas"),
        ("100507", "Huánuco", "Huamalíes", "Monzón"),
        ("150101", "Lima", "Lima", "Lima"),
        ("080101", "Cusco", "Cusco", "Cusco"),
        ("250101", "Ucayali", "Coronel Portillo", "Callería"),
    ],
)
def test_known_codes(code: str, department: str, province: str, district: str) -> None:
    found = lookup(code)
    # The list writes a few names without their accents (Calleria): compare as INEI does.
    assert same_name(found.department, department)
    assert same_name(found.province, province)
    assert same_name(found.district, district)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("12020", "six digits"),
        ("12020a", "six digits"),
        ("260101", "no department 26"),
        ("000101", "no department 00"),
        ("120299", "no such district"),
    ],
)
def test_bad_codes(code: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        lookup(code)


def test_names_compare_without_accents_or_case() -> None:
    assert same_name("Junin", "Junín")
    assert same_name("  huanuco ", "Huánuco")
    assert not same_name("Comas", "Concepción")
