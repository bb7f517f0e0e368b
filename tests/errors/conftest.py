"""The CLI suite's config fixture, for the error-message tables here."""

from tests.cli.conftest import make_config as make_config
