"""The NOC page and the read API: server-rendered HTML in Spanish and English, JSON,
and the viewers who may see them (docs/api.md)."""

from collector.web.routes import install

__all__ = ["install"]
