"""A generated sample mailing list, so the quick start runs without anyone's real data."""

from __future__ import annotations

import csv
import random
from pathlib import Path

FIRST_NAMES = (
    "Amara", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kavya", "Lars",
    "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Rosa", "Sanjay", "Tomasz", "Uma", "Viktor", "Wen", "Yara",
    "Zoé", "Ángel", "Søren", "Chloë",
)
LAST_NAMES = (
    "Adeyemi", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ivanova", "Jansen",
    "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Brien", "Patel", "Rossi", "Schmidt", "Tanaka", "Weber",
)
COMPANIES = (
    "Northwind Traders", "Contoso, Ltd.", "Fabrikam Inc", "Tailspin Toys", "Wide World Importers",
    "Adventure Works", "Litware", "Proseware", "Lucerne Publishing", "Coho Winery", "Alpine Ski House",
    "Margie's Travel", "Woodgrove Bank", "Trey Research", "Blue Yonder Airlines", "Humongous Insurance",
)
TITLES = (
    "Head of Marketing", "Marketing Manager", "VP Sales", "Chief Technology Officer", "Data Analyst",
    "Operations Director", "Growth Lead", "Procurement Manager", "CEO", "IT Manager", "Product Owner",
)
DOMAINS = ("example.com", "example.org", "example.net")
HEADER = ("Email", "First Name", "Last Name", "Company", "Job Title", "Customer")


def write_sample_list(path: Path, *, leads: int = 200, seed: int = 7, customer_share: float = 0.1) -> Path:
    """Write `leads` people on reserved example domains to `path` as CSV and return the path.

    About `customer_share` of them have `Customer` set to `yes`. Two extra rows
    show the importer at work: one repeats an address in other letter case and
    one has a broken address.
    """
    generator = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        first_email = ""
        for number in range(1, leads + 1):
            first = generator.choice(FIRST_NAMES)
            last = generator.choice(LAST_NAMES)
            local = "".join(c for c in f"{first}.{last}".lower() if c.isascii() and (c.isalnum() or c == "."))
            email = f"{local}.{number}@{generator.choice(DOMAINS)}"
            first_email = first_email or email
            customer = "yes" if generator.random() < customer_share else "no"
            writer.writerow((email, first, last, generator.choice(COMPANIES), generator.choice(TITLES), customer))
        writer.writerow((first_email.upper(), "", "", "", "", "no"))
        writer.writerow(("not-an-address", "Broken", "Row", "", "", "no"))
    return path
