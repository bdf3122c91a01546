"""Languages of the NOC page: message catalogues and the choice of a language.

The catalogues are gettext `.po` files under `locale/{es,en}/LC_MESSAGES/`, compiled
to `.mo` in memory when the collector starts (Babel), so there is no build step and no
compiled file to forget. The only module that imports Babel.
"""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"  # Peru's NOCs; a browser asking for English gets English
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).parent / "locale"


def load_catalogues(
    locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN
) -> dict[str, gettext.GNUTranslations]:
    """Each language's catalogue, compiled from its `.po` file (blocking: file reads).
    `domain` "reports" holds the messages of the SLA report (collector.reports)."""
    catalogues: dict[str, gettext.GNUTranslations] = {}
    for language in LANGUAGES:
        path = locale_dir / language / "LC_MESSAGES" / f"{domain}.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=language, domain=domain, abort_invalid=True)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        catalogues[language] = gettext.GNUTranslations(compiled)
    return catalogues


def negotiate(accept_language: str | None) -> str:
    """The language to answer in, from an Accept-Language header (RFC 9110 §12.5.4):
    the supported language of highest weight, the first listed among equals."""
    best: tuple[float, int] | None = None
    chosen = DEFAULT_LANGUAGE
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, parameters = item.partition(";")
        primary = tag.strip().lower().split("-")[0]
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if primary == "*":
            primary = DEFAULT_LANGUAGE
        if primary not in LANGUAGES or not 0 < weight <= 1:
            continue
        rank = (-weight, position)
        if best is None or rank < best:
            best, chosen = rank, primary
    return chosen
