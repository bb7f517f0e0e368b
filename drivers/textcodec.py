"""The one check of a device's text encoding, for the serial parsers and the ZK simulator.

(config/settings.py keeps its own copy of the rule for ``config check``: config imports nothing
of drivers.)
"""

from __future__ import annotations

_ASCII_SAMPLE = b"0123456789 ,;:/-ABCDEFINOUTabcdefinout\r\n\x00"


def check_text_encoding(encoding: str) -> None:
    """``ValueError`` unless ``encoding`` is a text encoding that reads ASCII as ASCII.

    Terminals end names with NUL bytes and serial clocks end lines with CR/LF: 'hex', 'base64'
    or 'rot13' (codecs, not text encodings), UTF-16/32 and EBCDIC cannot work.
    """
    try:
        readable = _ASCII_SAMPLE.decode(encoding) == _ASCII_SAMPLE.decode("ascii")
    except LookupError:  # unknown, or a bytes-to-bytes codec such as 'hex'
        raise ValueError(
            f"{encoding!r} is not a text encoding: use e.g. 'ascii', 'utf-8' or 'latin-1'"
        ) from None
    except ValueError:  # UnicodeDecodeError, as UTF-16 and UTF-32 give
        readable = False
    if not readable:
        raise ValueError(
            f"encoding {encoding!r} does not read ASCII digits, letters, NUL and line ends as "
            "ASCII; use an ASCII-compatible code page (e.g. 'ascii', 'utf-8', 'latin-1', "
            "'cp1251', 'gbk')"
        )
