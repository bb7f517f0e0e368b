"""The card table: card number -> employee, from the config's ``cards`` and a roster CSV file.

Card numbers are compared after normalisation (spaces removed, upper case, leading zeros
dropped), so ``"0004521837"`` and ``"4521837"`` are the same card. An EM4100 card also matches
the numbers printed on it: its 32-bit decimal number and its ``facility,number`` pair.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

from config.errors import ConfigError

_HEX = frozenset("0123456789ABCDEF")
_HEADER_WORDS = {"card", "card_number", "cardnumber", "card number", "badge", "uid", "number"}

log = structlog.get_logger("drivers.serial")


def normalize_card(card: str) -> str:
    """The comparable form of a card number: no spaces, upper case, no leading zeros.

    Digits of any script (full-width from an IME, Arabic-Indic) are the ASCII digits a reader
    sends: a roster typed with them named a card that no reader could match.
    """
    text = _ascii_digits(unicodedata.normalize("NFKC", "".join(card.split()))).upper()
    for separator in (",", ":", "/"):
        if separator in text:
            facility, _, number = text.partition(separator)
            if facility.isdecimal() and number.isdecimal():
                return f"{int(facility)},{int(number)}"
            return text
    if text and _HEX.issuperset(text):
        return text.lstrip("0") or "0"
    return text


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def em4100_aliases(card_hex: str) -> tuple[str, ...]:
    """Other numbers an EM4100 card is known by: 32-bit decimal and ``facility,number``."""
    try:
        value = int(card_hex, 16)
    except ValueError:
        return ()
    low32 = value & 0xFFFF_FFFF
    return (str(low32), f"{(low32 >> 16) & 0xFF},{low32 & 0xFFFF}")


class CardTable:
    """Maps card numbers to employees; lookups never raise."""

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self._map = {normalize_card(card): employee for card, employee in (mapping or {}).items()}

    def __len__(self) -> int:
        return len(self._map)

    def lookup(self, card: str, aliases: Iterable[str] = ()) -> str | None:
        """The employee for ``card`` (or one of its other printed numbers), or None."""
        employee = self._map.get(normalize_card(card))
        if employee is not None:
            return employee
        for alias in aliases:
            employee = self._map.get(normalize_card(alias))
            if employee is not None:
                return employee
        return None


def load_card_table(
    cards: Mapping[str, str], roster_file: Path | None, device_id: str = ""
) -> CardTable:
    """The config's ``cards`` over the roster file's rows (the config wins on a conflict)."""
    merged: dict[str, str] = {}
    if roster_file is not None:
        merged.update(read_roster(roster_file, device_id))
    overridden = 0
    for card, employee in cards.items():
        key = normalize_card(card)
        if merged.get(key, employee) != employee:
            overridden += 1
        merged[key] = employee
    if overridden:
        log.warning(
            "cards in the config override the roster file",
            device=device_id,
            roster_file=str(roster_file),
            overridden=overridden,
        )
    return CardTable(merged)


def read_roster(path: Path, device_id: str = "") -> dict[str, str]:
    """Read a ``card,employee`` CSV (``;`` also accepted, optional header, ``#`` comments).

    Raises ``ConfigError`` naming every bad line, because a roster that is silently half read
    would turn known employees into unknown cards.
    """
    where = f"{device_id}: roster_file {path}" if device_id else f"roster_file {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        msg = f"{where}: no such file: create it (card,employee per line) or fix roster_file"
        raise ConfigError(msg, [msg]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"{where}: cannot read: {reason}: fix the file or its permissions"
        raise ConfigError(msg, [msg]) from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)]
    data = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    first = data[0][1] if data else ""
    delimiter = _delimiter(first)
    roster: dict[str, str] = {}
    seen_on: dict[str, int] = {}
    problems: list[str] = []
    for index, (number, line) in enumerate(data):
        row = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        cells = [cell.strip() for cell in row]
        if index == 0 and cells and cells[0].lower() in _HEADER_WORDS:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            problems.append(f"{where}: line {number}: expected 'card,employee', got {line!r}")
            continue
        plain = _ascii_digits(unicodedata.normalize("NFKC", cells[1]))
        if plain != cells[1]:
            # Terminals and HR write ids in ASCII digits: as written, the card's punches would
            # belong to an id nobody has (the manual punch check refuses it the same way).
            problems.append(
                f"{where}: line {number}: employee id {cells[1]!r} is not written as terminals "
                f"write it: write {plain}"
            )
            continue
        key = normalize_card(cells[0])
        if key in roster and roster[key] != cells[1]:
            problems.append(
                f"{where}: line {number}: card {cells[0]} is already given to employee "
                f"{roster[key]} on line {seen_on[key]}"
            )
            continue
        roster[key] = cells[1]
        seen_on.setdefault(key, number)
    if problems:
        raise ConfigError(f"{where}: {len(problems)} problem(s) in the roster file", problems)
    return roster


def _delimiter(line: str) -> str:
    """The first of ``,`` or ``;`` outside quotes in the first row, or ``,``."""
    # The card column comes first: a ';' file's "Lima, Ana" or a ',' file's "Ana; Lima"
    # name must not decide the delimiter (the first made every card unknown, silently).
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char in ",;" and not quoted:
            return char
    return ","
