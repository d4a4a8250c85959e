"""Clean and read the values of a mailing-list row: names, companies and yes/no flags."""

from __future__ import annotations

import unicodedata

# Spellings after trimming and case folding. English first, then French, German,
# Spanish, Italian, Portuguese and Dutch. Check marks come from spreadsheet exports.
TRUE_SPELLINGS = frozenset(
    {"yes", "y", "true", "t", "1", "x", "on", "checked", "✓", "✔",
     "oui", "ja", "j", "wahr", "si", "sí", "sim", "vrai", "vero", "verdadero", "verdadeiro", "waar"}
)
FALSE_SPELLINGS = frozenset(
    {"no", "n", "false", "f", "0", "off", "unchecked",
     "non", "nein", "falsch", "faux", "falso", "nao", "não", "nee", "onwaar"}
)


class InvalidFlag(ValueError):
    """A yes/no column contains a value that is neither; the message names the value."""


def clean_text(value: str) -> str:
    """Replace control and format characters (CR, LF, tab, zero-width) with spaces and collapse the spaces.

    Names and companies end up in email headers, where a CR or LF could start a new header.
    """
    if value.isprintable():
        return " ".join(value.split())
    characters = [" " if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp") else character for character in value]
    return " ".join("".join(characters).split())


def parse_flag(value: str) -> bool | None:
    """Read a yes/no cell: True or False, None when empty; raise `InvalidFlag` for anything else."""
    spelling = value.strip().casefold()
    if not spelling:
        return None
    if spelling in TRUE_SPELLINGS:
        return True
    if spelling in FALSE_SPELLINGS:
        return False
    excerpt = value.strip() if len(value.strip()) <= 40 else value.strip()[:37] + "..."
    raise InvalidFlag(f"{excerpt!r} is not a yes/no value such as yes, no, true, false, 1, 0 or x")
