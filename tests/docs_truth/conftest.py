"""Fixtures for the docs-truth suite: the CLI suite's config files and runner."""

from __future__ import annotations

from tests.cli.conftest import make_config  # noqa: F401 - re-exported fixture
