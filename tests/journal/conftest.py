"""The journal tests reuse the serial tests' captured-log fixture."""

from tests.drivers.serial.conftest import logs

__all__ = ["logs"]
