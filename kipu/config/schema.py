"""A JSON schema (draft 2020-12) from the configuration models, for editors."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from kipu.config.loader import model_hints
from kipu.config.units import DURATION_PATTERN, SIZE_PATTERN, Unit


def json_schema(model: type, title: str) -> dict[str, Any]:
    """A JSON schema (draft 2020-12) of `model`, for editors that check YAML."""
    definitions: dict[str, Any] = {}
    root = _schema_of(model, {}, definitions)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        **root,
        "$defs": definitions,
    }


def _schema_of(hint: Any, meta: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(hint)
    schema: dict[str, Any]
    if origin is Annotated:
        base, *extras = get_args(hint)
        unit = next((e for e in extras if isinstance(e, Unit)), None)
        if unit is None:
            return _schema_of(base, meta, definitions)
        pattern = DURATION_PATTERN if unit.kind == "duration" else SIZE_PATTERN
        schema = {"type": "string", "pattern": pattern}
    elif origin in (Union, types.UnionType):
        options = [o for o in get_args(hint) if o is not type(None)]
        schema = {"anyOf": [_schema_of(o, {}, definitions) for o in options]}
        if len(options) < len(get_args(hint)):
            schema["anyOf"].append({"type": "null"})
    elif origin is Literal:
        schema = {"enum": list(get_args(hint))}
    elif origin in (list, tuple):
        schema = {"type": "array", "items": _schema_of(get_args(hint)[0], {}, definitions)}
    elif origin is dict:
        schema = {
            "type": "object",
            "additionalProperties": _schema_of(get_args(hint)[1], {}, definitions),
        }
        if meta.get("key_pattern"):
            schema["propertyNames"] = {"pattern": meta["key_pattern"]}
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        name = hint.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder: models may refer to themselves
            hints = model_hints(hint)
            properties = {
                f.name: _schema_of(hints[f.name], f.metadata, definitions)
                for f in dataclasses.fields(hint)
            }
            required = [
                f.name
                for f in dataclasses.fields(hint)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ]
            definitions[name] = {
                "type": "object",
                "description": (hint.__doc__ or "").strip().splitlines()[0],
                "properties": properties,
                "additionalProperties": False,
                **({"required": required} if required else {}),
            }
        schema = {"$ref": f"#/$defs/{name}"}
    elif hint is str or hint is Path:
        schema = {"type": "string"}
    elif hint is bool:
        schema = {"type": "boolean"}
    elif hint is int:
        schema = {"type": "integer"}
    elif hint is float:
        schema = {"type": "number"}
    else:
        raise TypeError(f"unsupported configuration type {hint!r}")
    if meta.get("doc"):
        schema["description"] = meta["doc"]
    if meta.get("pattern"):
        schema["pattern"] = meta["pattern"]
    if origin is not Annotated:
        for ours, theirs in (
            ("minimum", "minimum"),
            ("exclusive_minimum", "exclusiveMinimum"),
            ("maximum", "maximum"),
        ):
            if meta.get(ours) is not None:
                schema[theirs] = meta[ours]
    return schema
