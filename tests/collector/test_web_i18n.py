"""Languages of the NOC page: every message in both catalogues, no text outside them,
the choice from Accept-Language, and pages rendered in each language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from collector.web.i18n import LANGUAGES, LOCALE_DIR, load_catalogues, negotiate
from collector.web.model import Scope
from collector.web.render import TEMPLATE_DIR, Renderer

TEMPLATES = sorted(TEMPLATE_DIR.glob("*.html"))
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[.0-9]*[sdf]|%%")


def extracted() -> dict[str, tuple[str, ...]]:
    """Every message the templates use: msgid -> placeholders."""
    messages: dict[str, tuple[str, ...]] = {}
    for template in TEMPLATES:
        with template.open("rb") as source:
            for _, _, message, _ in babel_extract(
                source, ("_", "gettext", "ngettext"), [], {"extensions": "jinja2.ext.i18n"}
            ):
                for text in message if isinstance(message, tuple) else (message,):
                    if text:
                        messages[text] = tuple(sorted(PLACEHOLDER.findall(text)))
    return messages


def catalogue(language: str) -> dict[str, list[str]]:
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        read = read_po(po, locale=language, abort_invalid=True)
    found: dict[str, list[str]] = {}
    for message in read:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for one in ids:
            found[str(one)] = [str(s) for s in strings]
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_templates_is_translated(language: str) -> None:
    used = extracted()
    assert len(used) > 80
    known = catalogue(language)
    assert sorted(set(used) - set(known)) == [], "missing from the catalogue"
    assert sorted(set(known) - set(used)) == [], "no longer used: remove from the catalogue"
    for msgid, placeholders in used.items():
        for translated in known[msgid]:
            assert translated, f"{language}: {msgid!r} is not translated"
            assert tuple(sorted(PLACEHOLDER.findall(translated))) == placeholders, msgid


TAG = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
BLOCKS = re.compile(r"<(style|script)\b.*?</\1>", re.S)
MARKUP = re.compile(r"<[^>]*>")
# What may stand in a template outside messages: punctuation and symbols, no words.
SYMBOLS = re.compile(r"[\s—·:,()←/%&;]*")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_templates_hold_no_text_outside_the_catalogues(template: Path) -> None:
    source = template.read_text("utf-8")
    text = MARKUP.sub(" ", BLOCKS.sub(" ", TAG.sub(" ", source)))
    assert SYMBOLS.fullmatch(text), f"text outside the catalogues: {text.split()}"
    # Attributes a person reads are messages too.
    for attribute in re.findall(r'(?:placeholder|aria-label|title)="([^"]*)"', source):
        assert TAG.fullmatch(attribute.strip()) or not attribute.strip(), attribute


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "es"),
        ("", "es"),
        ("en-US,en;q=0.9", "en"),
        ("es-PE,es;q=0.9,en;q=0.8", "es"),
        ("fr-FR,fr;q=0.9,en;q=0.5,es;q=0.4", "en"),
        ("qu-PE,es;q=0.3,en;q=0.2", "es"),
        ("de", "es"),
        ("en;q=0,es;q=0.1", "es"),
        ("en;q=bad", "es"),
        ("*", "es"),
        ("EN", "en"),
        ("es;q=0.5, en;q=0.5", "es"),
    ],
)
def test_the_language_from_accept_language(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_both_languages_render_from_the_compiled_catalogues() -> None:
    renderer = Renderer(load_catalogues(), globals_={"version": "1.2.3"})
    assert renderer.languages == LANGUAGES

    def link(path: str = "/", keep: bool = True, **changes: str | None) -> str:
        return path

    for language, title, status in (("es", "Sitio desconocido", 404), ("en", "No such site", 404)):
        page = renderer.render(
            "error.html",
            language,
            status=status,
            error=None,
            max_query=100,
            link=link,
            lang_query="",
            lang_explicit=False,
            scope=Scope(),
            refresh=None,
        )
        assert f"<h2>{title}</h2>" in page
        assert f'<html lang="{language}">' in page
