"""The outbox: the only code that writes SQL."""
