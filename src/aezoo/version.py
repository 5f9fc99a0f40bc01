"""The package version, at the bottom layer so that anything may stamp it into what it writes."""

__version__ = "0.1.0"
