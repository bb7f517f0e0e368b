"""A ``--db`` URL as it may be shown: its password (in the user part or a ``password=``
parameter) masked, also inside the messages libpq writes about it."""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
# libpq also takes the password as a query parameter: postgresql://hr@db/hr?password=...
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def _passwords(url: str) -> list[str]:
    """The password texts in ``url``, longest first, as written and percent-decoded."""
    found: list[str] = []
    _scheme, sep, rest = url.partition("://")
    # Up to the last '@': an unencoded '@' or '/' in a password must not hide its tail, and a
    # URL that does not parse (libpq echoes those whole) must be masked all the same.
    if sep and "@" in rest:
        userinfo = rest.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(url)]
    variants = {v for p in found if p for v in (p, unquote(p))}
    return sorted(variants, key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``."""
    return scrub(url, url)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL's passwords replaced by ``***``."""
    for secret in _passwords(url):
        text = text.replace(secret, MASK)
    return text
