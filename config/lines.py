"""Which line of a TOML file holds a setting: the line a technician's editor jumps to.

tomllib keeps no positions, so this reads the text the way people write a punchgate config:
``[section]`` and ``[[devices]]`` headers, one ``key = value`` per line. Anything else (dotted
keys, inline tables) gives no line rather than a wrong one.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[(\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
_SCAN_LIMIT = 10_000  # lines; a config is a page or two


def line_of(text: str, path: tuple[str | int, ...]) -> int | None:
    """The 1-based line of ``path`` (``("devices", 2, "port")``, ``("agent", "timezone")``).

    A key that is not in the file (a required key left out) gives its table's header line;
    a table that is not in the file gives ``None``.
    """
    if not path or not isinstance(path[0], str):
        return None
    table = path[0]
    index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
    rest = path[2:] if index is not None else path[1:]
    key = rest[0] if rest and isinstance(rest[0], str) else None
    seen = -1  # occurrences of [[table]] so far
    header: int | None = None
    for number, line in enumerate(text.splitlines()[:_SCAN_LIMIT], 1):
        heading = _HEADER.match(line)
        if heading:
            if header is not None:
                break  # the table we were in has ended without the key
            name = heading.group(2).strip("\"'")
            if name == table:
                seen += 1
                if index is None or seen == index:
                    header = number
                    if key is None:
                        return header
            continue
        found = _KEY.match(line) if header is not None else None
        if found and next(g for g in found.groups() if g is not None) == key:
            return number
    return header
