"""The distribution's version, one place for both halves."""

__version__ = "0.1.0"
