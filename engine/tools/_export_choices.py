"""The choices ``aidsafe export`` offers, in a module of their own so that
the command line reads them without importing the exporter."""

from __future__ import annotations

FORMATS = ("sft", "dpo", "hf", "parquet", "records")
LAYOUTS = ("sft", "dpo")
THINKING = ("tag", "field")
SOURCES = ("records", "aidsafe")

__all__ = ["FORMATS", "LAYOUTS", "SOURCES", "THINKING"]
