"""What to write instead, for the TOML syntax errors a config edited on site usually has.

tomllib says where ("Invalid value (at line 7, column 8)") but not what was meant; the failing
line nearly always shows it: a text value without quotes, Python's True, a string left open,
a key written twice.
"""

from __future__ import annotations

import re
import tomllib

_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*(.*?)\s*$")
_PYTHON_BOOLS = {"True", "False", "TRUE", "FALSE", "yes", "no", "on", "off", "Yes", "No"}


def line_hint(line: str, error: str) -> str:
    """``"; ..."`` saying how to write ``line`` (the one tomllib stopped at), or ``""``."""
    if error.startswith("Cannot overwrite a value") or error.startswith("Cannot declare"):
        return "; a key or [section] is written more than once in the same table: keep one"
    if error.startswith("Expected '=' after a key"):
        return '; write each setting as key = value, e.g. host = "10.0.0.20"'
    match = _ASSIGNMENT.match(line)
    if match is None:
        return ""
    key, value = match.groups()
    if value[:1] in ('"', "'"):
        if value.count(value[0]) == 1:
            return (
                f"; the text after {key} = is not closed: end it with the same quote ({value[0]})"
            )
        return ""
    value = value.split("#", 1)[0].rstrip()  # unquoted: a '#' starts a comment
    if not value or value[:1] in "[{" or _is_toml_value(value):
        return ""
    if value in _PYTHON_BOOLS:
        return f"; write {key} = true or {key} = false (lowercase, no quotes)"
    return f'; text values go in quotes: write {key} = "{value}"'


def _is_toml_value(value: str) -> bool:
    try:
        tomllib.loads(f"x = {value}")
    except tomllib.TOMLDecodeError:
        return False
    return True
