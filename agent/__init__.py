"""The composition root: config to objects, the daemon's supervisor, MQTT delivery and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("punchgate")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
