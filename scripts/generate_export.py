"""Write a large CRM lead export to test "bring your own history" at scale (issue #13).

    python scripts/generate_export.py --rows 100000 --out /tmp/export

writes OUT/leads.csv and OUT/mapping.json (for `cli import FILE --mapping OUT/mapping.json`). The file
looks like a real CRM's export of its lead history, and is generated, never stored in the repository:

- no date columns; rows listed newest first; an outcome column `Converted` (0/1), blank for the leads
  still open (the first `--open` rows);
- `Prospect ID` (a random UUID per row) and `Lead Number` (counts down the file: it tracks time): ids;
- numbers the way spreadsheets format them: `Time on website` with thousands separators ("1,532"),
  `Annual revenue` in dollars ("$1,200"), `Discount` in percent ("12%"), `Rating` with a decimal
  comma ("3,5"); placeholder words ("Select") where nothing was chosen;
- descriptive columns that decide the outcome (source, specialization, time on site, revenue, ...);
- `Tags`, filled in by sales once the outcome is known: the leak the model guard must catch.

Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import uuid
from pathlib import Path

SOURCES = ["Google", "Direct Traffic", "Olark Chat", "Organic Search", "Reference", "Welingak Website",
           "Referral Sites", "Facebook", "bing", "Click2call", "Press_Release", "Social Media", "Live Chat",
           "youtubechannel", "testone", "Pay per Click Ads", "WeLearn", "blog", "NC_EDM", "Partner"]
SOURCE_PULL = {s: (i % 7 - 3) * 0.25 for i, s in enumerate(SOURCES)}
SPECIALIZATIONS = ["Select", "Finance Management", "Human Resource Management", "Marketing Management",
                   "Operations Management", "Business Administration", "IT Projects Management",
                   "Supply Chain Management", "Banking, Investment And Insurance", "Media and Advertising"]
COUNTRIES = ["India", "United States", "United Arab Emirates", "Singapore", "Saudi Arabia", "United Kingdom",
             "Australia", "Qatar", ""]
ORIGINS = ["Landing Page Submission", "API", "Lead Add Form", "Lead Import"]
WON_TAGS = (["Closed by Horizzon", "Will revert after reading the email", "Lost to EINS", "Busy"],
            [0.55, 0.3, 0.05, 0.1])
LOST_TAGS = (["Ringing", "Interested in other courses", "Will revert after reading the email", "Busy",
              "Already a student", "switched off"], [0.35, 0.15, 0.1, 0.1, 0.2, 0.1])

MAPPING = {
    "description": "A generated CRM lead export (scripts/generate_export.py): no dates, newest first.",
    "columns": {"Converted": "outcome"},
    "unmapped": "custom",
    "values": {"outcome": {"1": "won", "0": "lost"}},
    "defaults": {"source": "website"},
    "row_id_prefix": "export:row-",
    "name_template": "Exported lead {row}",
    "missing_values": ["Select"],
    "row_order": "newest_first",
}


def _thousands(n: int) -> str:
    return f"{n:,}"


def rows(count: int, open_rows: int, seed: int):
    rng = random.Random(seed)
    yield ["Prospect ID", "Lead Number", "Lead Origin", "Lead Source", "Do Not Email", "TotalVisits",
           "Time on website", "Annual revenue", "Discount", "Rating", "Specialization", "Country", "Tags",
           "Converted"]
    for i in range(count):
        source = rng.choice(SOURCES)
        origin = rng.choices(ORIGINS, [0.5, 0.35, 0.1, 0.05])[0]
        specialization = rng.choice(SPECIALIZATIONS)
        seconds = int(rng.expovariate(1 / 500)) if rng.random() < 0.8 else 0
        visits = min(60, int(rng.expovariate(1 / 3.5)))
        revenue = int(rng.lognormvariate(8, 1.2))
        discount = rng.choice([0, 5, 10, 12, 15, 20, 25])
        rating = rng.choice([1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5])
        no_email = rng.random() < 0.08
        log_odds = (-2.0 + SOURCE_PULL[source] + 1.3 * (origin == "Lead Add Form") + 0.0012 * seconds
                    + 0.04 * min(visits, 15) + 0.25 * math.log10(1 + revenue)
                    - 0.6 * (specialization == "Select")
                    + 0.25 * (rating - 3) - 0.9 * no_email + 0.01 * discount)
        is_open = i < open_rows
        won = rng.random() < 1 / (1 + math.exp(-log_odds))
        if is_open:
            tags = ""
        else:
            names, weights = WON_TAGS if won else LOST_TAGS
            tags = rng.choices(names, weights)[0] if rng.random() < 0.8 else ""
        yield [
            str(uuid.UUID(int=rng.getrandbits(128))),
            str(660_737 - 9 * i - rng.randint(0, 8)),
            origin,
            source,
            "Yes" if no_email else "No",
            str(visits),
            _thousands(seconds),
            f"${revenue:,}",
            f"{discount}%",
            f"{rating:g}".replace(".", ","),
            specialization,
            rng.choice(COUNTRIES),
            tags,
            "" if is_open else ("1" if won else "0"),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=2_000, help="how many of the first rows are still open")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, required=True, help="a folder for leads.csv and mapping.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "leads.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows(args.rows, args.open, args.seed))
    (args.out / "mapping.json").write_text(json.dumps(MAPPING, indent=2))
    print(f"Wrote {args.rows:,} rows to {args.out / 'leads.csv'} "
          f"and the mapping to {args.out / 'mapping.json'}")


if __name__ == "__main__":
    main()
