"""HTML of the NOC page from Jinja2 templates: the only module that imports Jinja2.

One environment per language, each with its catalogue installed, so pages in both
languages render at once from worker threads (an environment is not changed after it
is built). Templates are read and compiled when the collector starts; rendering reads
no file.
"""

from __future__ import annotations

import gettext
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"


class Renderer:
    """Renders the templates in each language of `catalogues`."""

    def __init__(
        self,
        catalogues: dict[str, gettext.GNUTranslations],
        template_dir: Path = TEMPLATE_DIR,
        globals_: dict[str, Any] | None = None,
    ) -> None:
        """Read and compile every template (blocking: call it from a worker thread)."""
        sources = {
            path.name: path.read_text("utf-8")
            for path in sorted(template_dir.iterdir())
            if path.suffix in (".html", ".css")
        }
        self._environments: dict[str, jinja2.Environment] = {}
        for language, catalogue in catalogues.items():
            environment = jinja2.Environment(
                loader=jinja2.DictLoader(sources),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=["jinja2.ext.i18n"],
            )
            environment.install_gettext_translations(catalogue, newstyle=False)  # type: ignore[attr-defined]
            environment.globals.update(globals_ or {}, language=language)
            for name in sources:
                if name.endswith(".html"):
                    environment.get_template(name)  # compiled now, not on a first request
            self._environments[language] = environment

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages it renders, as given."""
        return tuple(self._environments)

    def render(self, template: str, language: str, **context: Any) -> str:
        """The template in `language`, with `context`."""
        return self._environments[language].get_template(template).render(**context)
