"""Prepare-once, run-many execution: memory planning, execution plans, sessions."""

from .session import Session  # noqa: F401
