"""The typed configuration loader both programs use (see `kipu.config.loader`); the JSON
schema of a model is `kipu.config.schema.json_schema`, imported only when wanted."""

from kipu.config.loader import (
    ConfigError,
    Problem,
    Validated,
    load_file,
    load_node,
    load_text,
    setting,
)
from kipu.config.units import Duration, Size, format_duration, parse_duration, parse_size

__all__ = [
    "ConfigError",
    "Duration",
    "Problem",
    "Size",
    "Validated",
    "format_duration",
    "load_file",
    "load_node",
    "load_text",
    "parse_duration",
    "parse_size",
    "setting",
]
