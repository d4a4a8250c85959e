"""Recognise the columns of a mailing-list export by their usual header spellings."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from leadflow.errors import ImportFileError

TEXT_FIELDS = ("email", "first_name", "last_name", "full_name", "company", "title")
FLAG_FIELDS = ("customer", "consent", "do_not_email")
LEAD_FIELDS = TEXT_FIELDS + FLAG_FIELDS

# Header spellings after `normalize_header`: lower-case letters and digits without accents.
# English first, then French, German, Spanish, Italian, Portuguese and Dutch.
HEADER_ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset(
        {
            "email", "emailaddress", "mail", "mailaddress", "primaryemail", "workemail", "businessemail",
            "courriel", "adressecourriel", "adresseemail", "adressemail", "adresseelectronique",
            "emailadresse", "mailadresse", "correo", "correoelectronico", "direcciondecorreo",
            "direcciondecorreoelectronico", "indirizzoemail", "postaelettronica", "enderecodeemail",
            "emailadres",
        }
    ),
    "first_name": frozenset(
        {
            "firstname", "first", "givenname", "forename", "fname",
            "prenom", "vorname", "nombre", "nome", "primeironome", "voornaam",
        }
    ),
    "last_name": frozenset(
        {
            "lastname", "last", "surname", "familyname", "lname",
            "nom", "nomdefamille", "nachname", "familienname", "apellido", "apellidos", "cognome",
            "sobrenome", "apelido", "achternaam",
        }
    ),
    "full_name": frozenset(
        {"name", "fullname", "contactname", "contact", "nomcomplet", "vollstandigername", "nombrecompleto",
         "nomecompleto", "volledigenaam", "naam"}
    ),
    "company": frozenset(
        {
            "company", "companyname", "organization", "organisation", "org", "account", "accountname", "employer",
            "societe", "entreprise", "firma", "unternehmen", "empresa", "azienda", "societa", "bedrijf",
            "bedrijfsnaam",
        }
    ),
    "title": frozenset(
        {
            "title", "jobtitle", "position", "role", "jobrole", "designation",
            "poste", "fonction", "berufsbezeichnung", "jobtitel", "cargo", "puesto", "ruolo", "qualifica",
            "functie",
        }
    ),
    "customer": frozenset({"customer", "iscustomer", "existingcustomer", "bestandskunde", "clientexistant"}),
    "consent": frozenset(
        {
            "consent", "emailconsent", "marketingconsent", "gdprconsent", "optin", "emailoptin",
            "marketingoptin", "consentement", "einwilligung", "consentimiento", "consenso", "toestemming",
        }
    ),
    "do_not_email": frozenset(
        {
            "donotemail", "dontemail", "noemail", "emailoptout", "optout", "optedout", "hasoptedoutofemail",
            "unsubscribed", "unsubscribedfromallemail", "donotcontact", "nepascontacter", "desabonne",
            "desinscrit", "abgemeldet", "werbewiderspruch", "nocontactar", "dadodebaja", "noncontattare",
            "nietmailen", "afgemeld",
        }
    ),
}

# A header that ends in an email word, maybe followed by an address word and a number:
# "Email 1", "Work Email", "E-Mail-Adresse 2", "Correo electrónico". "Email Opt In" does not match.
_EMAIL_LIKE = re.compile(
    r"(e?mail|courriel|correoelectronico|correo|postaelettronica)(address|adresse|adres)?\d*$"
)


def normalize_header(header: str) -> str:
    """Reduce a header to lower-case letters and digits without accents: ` E-mail Address ` becomes `emailaddress`."""
    decomposed = unicodedata.normalize("NFKD", header.casefold())
    return "".join(character for character in decomposed if character.isalnum() and character.isascii())


def _flag_field(normalized: str) -> str | None:
    for name in FLAG_FIELDS:
        if normalized in HEADER_ALIASES[name]:
            return name
    return None


def is_email_header(header: str) -> bool:
    """Return True when `header` is a usual spelling of an email address column."""
    normalized = normalize_header(header)
    if not normalized or _flag_field(normalized) is not None:
        return False
    return normalized in HEADER_ALIASES["email"] or _EMAIL_LIKE.search(normalized) is not None


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


@dataclass(frozen=True)
class ColumnChoice:
    """`--column FIELD=HEADER`: read FIELD from the column HEADER, or from no column when HEADER is empty."""

    field: str
    header: str

    @classmethod
    def parse(cls, text: str) -> ColumnChoice:
        name, separator, header = text.partition("=")
        wanted = normalize_header(name)
        fields = {normalize_header(field): field for field in LEAD_FIELDS}
        fields["name"] = "full_name"
        if not separator or wanted not in fields:
            raise ImportFileError(
                f"--column {text!r} is not of the form FIELD=HEADER with FIELD one of: {', '.join(LEAD_FIELDS)}; "
                'for example --column email="Work Email"'
            )
        return cls(field=fields[wanted], header=header.strip())


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


def _find_header(headers: list[str], wanted: str) -> int | None:
    """Return the position of `wanted` in `headers`, matched exactly after trimming, then by normalized spelling."""
    exact = [index for index, header in enumerate(headers) if header.strip().casefold() == wanted.strip().casefold()]
    if exact:
        return exact[0]
    normalized = normalize_header(wanted)
    loose = [index for index, header in enumerate(headers) if normalized and normalize_header(header) == normalized]
    return loose[0] if loose else None


def _list_headers(headers: list[str]) -> str:
    return ", ".join(repr(header) for header in headers) or "none"


def map_columns(
    headers: list[str], customer_rules: list[CustomerRule], choices: list[ColumnChoice] | None = None
) -> ColumnMap:
    """Find the lead fields' columns; raise `ImportFileError` when no email column exists.

    `--column` choices come first. The remaining fields are found by their usual
    spellings, and a column already taken is never used twice. A column named by a
    `--customer-if` rule is not read as a yes/no flag.
    """
    column_map = ColumnMap(headers=headers)
    normalized = [normalize_header(header) for header in headers]
    excluded: set[str] = set()

    for choice in choices or []:
        if not choice.header:
            excluded.add(choice.field)
            continue
        index = _find_header(headers, choice.header)
        if index is None:
            raise ImportFileError(
                f"--column {choice.field}={choice.header!r} names a column that is not in the file; "
                f"the header row has: {_list_headers(headers)}"
            )
        column_map.positions[choice.field] = index

    rule_columns: list[int] = []
    for rule in customer_rules:
        index = _find_header(headers, rule.column)
        if index is None:
            raise ImportFileError(
                f"--customer-if names column {rule.column!r}, which is not in the file; "
                f"the header row has: {_list_headers(headers)}"
            )
        rule_columns.append(index)
        column_map.customer_rules.append((index, rule.value.casefold()))

    def is_free(index: int, name: str) -> bool:
        if name in FLAG_FIELDS and index in rule_columns:
            return False
        return index not in column_map.positions.values()

    if "email" not in column_map.positions and "email" not in excluded:
        email_positions = [index for index, header in enumerate(headers) if is_free(index, "email") and is_email_header(header)]
        if email_positions:
            column_map.positions["email"] = email_positions[0]
            column_map.unused_email_columns = [headers[index] for index in email_positions[1:]]
    if "email" not in column_map.positions:
        raise ImportFileError(
            f"no email column found; the header row has: {_list_headers(headers)}. "
            'Name the column Email, or choose it with --column email="HEADER"'
        )

    for name in LEAD_FIELDS[1:]:
        if name in column_map.positions or name in excluded:
            continue
        for index, header in enumerate(normalized):
            if header in HEADER_ALIASES[name] and is_free(index, name):
                column_map.positions[name] = index
                break
    return column_map
