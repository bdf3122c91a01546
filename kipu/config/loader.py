"""Typed YAML configuration: frozen dataclasses built from YAML nodes, with line marks.

The agent and the collector describe their configuration as frozen dataclasses. This
module turns a YAML document into those dataclasses, reporting *every* problem at once
as ``FILE:LINE: dotted.key: message``; `kipu.config.schema` derives a JSON schema from
the same type hints so editors can check a file before the programs do.

We do not use pydantic here: the agent runs on small boxes and pydantic alone costs
about 5-10 MB of resident memory, which the 40 MB budget of the agent cannot afford.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from kipu.config.units import Unit, parse_duration, parse_size

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key or '(top)'}: {self.message}"


class ConfigError(Exception):
    """A configuration file could not be loaded; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    pattern: str | None = None,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float | None = None,
    unique: str | None = None,
    key_pattern: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a configuration field with its documentation and constraints.

    `unique` names a field of the list's items that must not repeat (e.g. ``"name"``);
    `key_pattern` constrains the keys of a mapping field (``dict[str, Model]``);
    `check` returns why a well-typed value is still wrong, or None.
    """
    metadata = {
        "doc": doc,
        "pattern": pattern,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "unique": unique,
        "key_pattern": key_pattern,
        "check": check,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Validated:
    """Mixin for models with rules across fields.

    `problems()` yields ``(field_name, message)``; the loader reports each at the line
    of that field (or of the mapping when the field is absent).
    """

    def problems(self) -> Iterator[tuple[str, str]]:
        return iter(())


def load_file(model: type[T], path: str | Path) -> T:
    """Load and validate a YAML file into `model`; ConfigError lists every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([Problem(name, 0, "", f"cannot read the file: {err}")]) from err
    return load_text(model, text, name)


def load_text(model: type[T], text: str, name: str = "<config>") -> T:
    """Load and validate YAML `text` into `model`; `name` is the file named in errors."""
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        reason = f"{err.problem or err}" + (f" ({err.context})" if err.context else "")
        raise ConfigError([Problem(name, line, "", f"not valid YAML: {reason}")]) from err
    except yaml.YAMLError as err:
        raise ConfigError([Problem(name, 0, "", f"not valid YAML: {err}")]) from err
    if node is None:
        raise ConfigError([Problem(name, 1, "", "the file is empty")])
    return load_node(model, node, name)


def load_node(model: type[T], node: yaml.Node, name: str, key: str = "") -> T:
    """Build `model` from a YAML node (with its line marks); ConfigError lists every problem.

    For documents assembled by hand, e.g. a CSV row turned into a mapping node whose
    marks carry the row's line; `key` prefixes the dotted keys in messages.
    """
    builder = _Builder(name)
    value = builder.build(model, node, key)
    if builder.problems:
        raise ConfigError(builder.problems)
    return typing.cast(T, value)


_CONSTRUCTOR = yaml.SafeLoader("")
# libyaml's parser when PyYAML has it (Debian's and PyPI's wheels do): ten times faster
# on a 10,000-site inventory, with the same line marks.
_COMPOSER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


class _InvalidError(Exception):
    """Raised inside the builder after the problem has been recorded."""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _join(key: str, part: str | int) -> str:
    return f"{key}.{part}" if key else str(part)


_HINTS: dict[type, dict[str, Any]] = {}


def model_hints(model: type) -> dict[str, Any]:
    if model not in _HINTS:
        _HINTS[model] = typing.get_type_hints(model, include_extras=True)
    return _HINTS[model]


class _Builder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []

    def fail(self, node: yaml.Node, key: str, message: str) -> _InvalidError:
        self.problems.append(Problem(self.name, _line(node), key, message))
        return _InvalidError()

    def build(self, hint: Any, node: yaml.Node, key: str, meta: Any = None) -> Any:
        meta = meta or {}
        try:
            value = self._build(hint, node, key, meta)
        except _InvalidError:
            return None
        if value is not None and meta.get("check") and (why := meta["check"](value)):
            self.fail(node, key, why)
            return None
        return value

    def _build(self, hint: Any, node: yaml.Node, key: str, meta: Any) -> Any:
        origin = get_origin(hint)
        if origin is Annotated:
            base, *extras = get_args(hint)
            unit = next((e for e in extras if isinstance(e, Unit)), None)
            if unit is None:
                return self._build(base, node, key, meta)
            text = self._scalar_text(node, key, f"a {unit.kind}")
            parse = parse_duration if unit.kind == "duration" else parse_size
            try:
                value: Any = parse(text)
            except ValueError as err:
                raise self.fail(node, key, str(err)) from None
            return self._check_range(value, node, key, meta, text)
        if origin in (Union, types.UnionType):
            return self._build_union(get_args(hint), node, key, meta)
        if origin is Literal:
            choices = get_args(hint)
            text = self._scalar_text(node, key, "one of " + ", ".join(map(str, choices)))
            if text not in choices:
                allowed = ", ".join(str(c) for c in choices)
                raise self.fail(node, key, f"{text!r} is not one of: {allowed}")
            return text
        if origin is dict:
            return self._build_mapping(get_args(hint)[1], node, key, meta)
        if origin in (list, tuple):
            item_hint = get_args(hint)[0]
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(node, key, "expected a list")
            items = [self.build(item_hint, v, _join(key, i)) for i, v in enumerate(node.value)]
            self._check_unique(node, key, meta)
            return tuple(items)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self._build_model(hint, node, key)
        if hint is str:
            text = self._scalar_text(node, key, "a string")
            if meta.get("pattern") and not re.fullmatch(meta["pattern"], text):
                raise self.fail(node, key, f"{text!r} does not match {meta['pattern']}")
            return text
        if hint is Path:
            return Path(self._scalar_text(node, key, "a path"))
        if hint is bool:
            value = self._scalar_value(node, key)
            if not isinstance(value, bool):
                raise self.fail(node, key, f"expected true or false, got {node.value!r}")
            return value
        if hint in (int, float):
            value = self._scalar_value(node, key)
            ok = isinstance(value, int) or (hint is float and isinstance(value, float))
            if isinstance(value, bool) or not ok or not math.isfinite(value):
                kind = "an integer" if hint is int else "a number"
                raise self.fail(node, key, f"expected {kind}, got {node.value!r}")
            return self._check_range(hint(value), node, key, meta, node.value)
        raise TypeError(f"unsupported configuration type {hint!r}")  # a bug in a model

    def _build_mapping(self, value_hint: Any, node: yaml.Node, key: str, meta: Any) -> Any:
        """A mapping of names (matching `meta["pattern"]` when set) to `value_hint`."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping of names to values")
        result: dict[str, Any] = {}
        failed = False
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, key, "expected a name as the key")
                failed = True
                continue
            name = str(key_node.value)
            if meta.get("key_pattern") and not re.fullmatch(meta["key_pattern"], name):
                self.fail(
                    key_node, _join(key, name), f"{name!r} does not match {meta['key_pattern']}"
                )
                failed = True
                continue
            if name in result:
                self.fail(key_node, _join(key, name), "duplicate key")
                failed = True
                continue
            result[name] = self.build(value_hint, value_node, _join(key, name))
            failed = failed or result[name] is None
        if failed:
            raise _InvalidError()
        return result

    def _build_union(self, options: tuple[Any, ...], node: yaml.Node, key: str, meta: Any) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            if type(None) in options:
                return None
            raise self.fail(node, key, "a value is required here")
        wanted = _node_kind(node)
        candidates = [o for o in options if o is not type(None) and _hint_kind(o) == wanted]
        if len(candidates) == 1:
            return self._build(candidates[0], node, key, meta)
        expected = " or ".join(_describe(o) for o in options if o is not type(None))
        raise self.fail(node, key, f"expected {expected}")

    def _build_model(self, model: type, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping of keys to values")
        fields = {f.name: f for f in dataclasses.fields(model)}
        hints = model_hints(model)
        values: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        failed = False
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if name is None or name not in fields:
                known = ", ".join(fields)
                self.fail(key_node, _join(key, str(name)), f"unknown key (known keys: {known})")
                failed = True
                continue
            if name in nodes:
                self.fail(key_node, _join(key, name), "duplicate key")
                failed = True
                continue
            nodes[name] = value_node
            value = self.build(hints[name], value_node, _join(key, name), fields[name].metadata)
            if value is None and not _allows_none(hints[name]):
                failed = True
            values[name] = value
        for name, f in fields.items():
            if (
                name not in nodes
                and f.default is dataclasses.MISSING
                and (f.default_factory is dataclasses.MISSING)
            ):
                self.fail(node, _join(key, name), "required key is missing")
                failed = True
        if failed:
            raise _InvalidError()
        try:
            instance = model(**values)
        except (TypeError, ValueError) as err:
            raise self.fail(node, key, str(err)) from None
        if isinstance(instance, Validated):
            for name, message in instance.problems():
                self.fail(nodes.get(name, node), _join(key, name), message)
        return instance

    def _scalar_text(self, node: yaml.Node, key: str, expected: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, key, f"expected {expected}")
        return str(node.value)

    def _scalar_value(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value")
        return _CONSTRUCTOR.construct_object(node)

    def _check_range(self, value: Any, node: yaml.Node, key: str, meta: Any, text: str) -> Any:
        lo, lo_x, hi = meta.get("minimum"), meta.get("exclusive_minimum"), meta.get("maximum")
        if lo is not None and value < lo:
            raise self.fail(node, key, f"{text} is below the minimum {lo}")
        if lo_x is not None and value <= lo_x:
            raise self.fail(node, key, f"{text} must be greater than {lo_x}")
        if hi is not None and value > hi:
            raise self.fail(node, key, f"{text} is above the maximum {hi}")
        return value

    def _check_unique(self, node: yaml.SequenceNode, key: str, meta: Any) -> None:
        # Read the names from the YAML itself, so a repeat is reported even when the
        # items fail for other reasons.
        field_name = meta.get("unique")
        if not field_name:
            return
        seen: set[str] = set()
        for i, item in enumerate(node.value):
            if not isinstance(item, yaml.MappingNode):
                continue
            for key_node, value_node in item.value:
                if key_node.value == field_name and isinstance(value_node, yaml.ScalarNode):
                    if value_node.value in seen:
                        path = _join(_join(key, i), field_name)
                        self.fail(value_node, path, f"{value_node.value!r} repeats")
                    seen.add(value_node.value)


def _allows_none(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "scalar"


def _hint_kind(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (list, tuple):
        return "list"
    if dataclasses.is_dataclass(hint) or origin is dict:
        return "mapping"
    return "scalar"


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(c) for c in get_args(hint))
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(hint) or origin is dict:
        return "a mapping"
    if origin is Annotated:
        unit = next((e for e in get_args(hint)[1:] if isinstance(e, Unit)), None)
        return f"a {unit.kind}" if unit else _describe(get_args(hint)[0])
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, "a value"
    )
