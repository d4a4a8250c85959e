"""Recognise the columns of a mailing-list export by their usual header spellings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from leadflow.errors import ImportFileError

LEAD_FIELDS = ("email", "first_name", "last_name", "full_name", "company", "title")

# Header spellings after `normalize_header`: lower-case, letters and digits only.
HEADER_ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset(
        {"email", "emailaddress", "mail", "mailaddress", "primaryemail", "workemail", "businessemail"}
    ),
    "first_name": frozenset({"firstname", "first", "givenname", "forename", "fname"}),
    "last_name": frozenset({"lastname", "last", "surname", "familyname", "lname"}),
    "full_name": frozenset({"name", "fullname", "contactname", "contact"}),
    "company": frozenset(
        {"company", "companyname", "organization", "organisation", "org", "account", "accountname", "employer"}
    ),
    "title": frozenset({"title", "jobtitle", "position", "role", "jobrole", "designation"}),
}

# A header that ends in "email", "mail" or "emailaddress", maybe numbered: "Email 1",
# "Work Email", "E-Mail Address 2". "Email Opt In" does not match.
_EMAIL_LIKE = re.compile(r"e?mail(address)?\d*$")


def normalize_header(header: str) -> str:
    """Reduce a header to lower-case letters and digits: ` E-mail Address ` becomes `emailaddress`."""
    return "".join(character for character in header.casefold() if character.isalnum())


@dataclass(frozen=True)
class CustomerRule:
    """`--customer-if COLUMN=VALUE`: a row whose COLUMN equals VALUE (case and spaces ignored) is a customer."""

    column: str
    value: str

    @classmethod
    def parse(cls, text: str) -> CustomerRule:
        column, separator, value = text.partition("=")
        if not separator or not column.strip():
            raise ImportFileError(
                f"--customer-if {text!r} is not of the form COLUMN=VALUE, for example \"Deal Stage=Closed Won\""
            )
        return cls(column=column.strip(), value=value.strip())


@dataclass
class ColumnMap:
    """Positions of the lead fields in each row."""

    headers: list[str]
    positions: dict[str, int] = field(default_factory=dict)
    unused_email_columns: list[str] = field(default_factory=list)
    customer_rules: list[tuple[int, str]] = field(default_factory=list)

    @property
    def email_header(self) -> str:
        return self.headers[self.positions["email"]]

    def describe(self) -> dict[str, str]:
        return {name: self.headers[index] for name, index in self.positions.items()}


def map_columns(headers: list[str], customer_rules: list[CustomerRule]) -> ColumnMap:
    """Find the email, name, company and title columns; raise `ImportFileError` when no email column exists."""
    column_map = ColumnMap(headers=headers)
    normalized = [normalize_header(header) for header in headers]

    email_positions = [
        index
        for index, name in enumerate(normalized)
        if name in HEADER_ALIASES["email"] or _EMAIL_LIKE.search(name)
    ]
    if not email_positions:
        found = ", ".join(repr(header) for header in headers) or "none"
        raise ImportFileError(
            f"no email column found; the header row has: {found}. "
            "Name the column Email, or rename it in the file before importing"
        )
    column_map.positions["email"] = email_positions[0]
    column_map.unused_email_columns = [headers[index] for index in email_positions[1:]]

    for name in LEAD_FIELDS[1:]:
        for index, header in enumerate(normalized):
            if header in HEADER_ALIASES[name] and index not in column_map.positions.values():
                column_map.positions[name] = index
                break

    for rule in customer_rules:
        wanted = normalize_header(rule.column)
        matches = [index for index, header in enumerate(normalized) if header == wanted]
        if not matches:
            found = ", ".join(repr(header) for header in headers)
            raise ImportFileError(
                f"--customer-if names column {rule.column!r}, which is not in the file; the header row has: {found}"
            )
        column_map.customer_rules.append((matches[0], rule.value.casefold()))
    return column_map
