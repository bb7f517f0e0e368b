"""The supervised daemon behind ``punchgate run``."""
