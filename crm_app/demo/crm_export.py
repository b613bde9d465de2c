"""A generated lead-history export shaped like the ones a new CRM user brings: for tests and benchmarks
of the import (and of training on imported history), never shipped as demo data.

The shape follows a public lead-scoring file (an education company's CRM export, 9,240 leads, 37
columns): a `Prospect ID` (a UUID) and a `Lead Number`, both unique; an outcome `Converted` 0/1; no
dates; a lead source written in about twenty words of the old CRM's own; "Select" wherever a form's
drop-down was left alone; and `Tags`, filled in by sales after the outcome was known (it nearly gives
the outcome away). Rows are listed newest first by default, and the win rate drifts over time, so a
wrong reading of the row order shows in the figures.

Options add what other exports do: numbers written with thousands separators, currency and decimal
commas (`formatted_numbers`).
"""

from __future__ import annotations

import csv
import math
import random
import uuid
from pathlib import Path

SOURCES = (  # the old CRM's words, most common first
    "Google", "Direct Traffic", "Olark Chat", "Organic Search", "Reference", "Welingak Website",
    "Referral Sites", "Facebook", "bing", "google", "Click2call", "Press_Release", "Social Media",
    "Live Chat", "youtubechannel", "testone", "Pay per Click Ads", "welearnblog_Home", "WeLearn", "NC_EDM",
)
_SOURCE_WEIGHTS = (29, 27, 19, 12, 6, 1.5, 1.3, 0.6, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05,
                   0.05, 0.05)
_SOURCE_EFFECT = {"Reference": 2.2, "Welingak Website": 2.5, "Olark Chat": -0.6, "Direct Traffic": -0.3}
ORIGINS = ("Landing Page Submission", "API", "Lead Add Form", "Lead Import")
ACTIVITIES = ("Email Opened", "SMS Sent", "Olark Chat Conversation", "Page Visited on Website",
              "Converted to Lead", "Email Bounced", "Email Link Clicked", "Form Submitted on Website")
OCCUPATIONS = ("Unemployed", "Working Professional", "Student", "Other", "Housewife", "Businessman")
SPECIALIZATIONS = ("Select", "Finance Management", "Human Resource Management", "Marketing Management",
                   "Operations Management", "Business Administration", "IT Projects Management")
CITIES = ("Select", "Mumbai", "Thane & Outskirts", "Other Cities", "Other Cities of Maharashtra")
TAGS_WON = ("Will revert after reading the email", "Closed by Horizzon", "Lost to EINS")
TAGS_LOST = ("Ringing", "Interested in other courses", "Already a student", "switched off",
             "Not doing further education")
HEADER = (
    "Prospect ID", "Lead Number", "Lead Origin", "Lead Source", "Do Not Email", "Do Not Call", "Converted",
    "TotalVisits", "Total Time Spent on Website", "Page Views Per Visit", "Last Activity", "Country",
    "Specialization", "How did you hear about X Education", "What is your current occupation",
    "What matters most to you in choosing a course", "Search", "Magazine", "Newspaper Article",
    "X Education Forums", "Newspaper", "Digital Advertisement", "Through Recommendations",
    "Receive More Updates About Our Courses", "Tags", "Lead Quality", "Update me on Supply Chain Content",
    "Get updates on DM Content", "Lead Profile", "City", "Asymmetrique Activity Index",
    "Asymmetrique Profile Index", "Asymmetrique Activity Score", "Asymmetrique Profile Score",
    "I agree to pay the amount through cheque", "A free copy of Mastering The Interview",
    "Last Notable Activity",
)


def _thousands(value: int) -> str:
    return f"{value:,}"


def write_lead_history_csv(path: Path, rows: int = 9_240, *, seed: int = 13, newest_first: bool = True,
                           formatted_numbers: bool = False) -> Path:
    """Write the file and return its path. The same arguments always write the same bytes."""
    rng = random.Random(seed)
    records = []
    for i in range(rows):  # i = 0 is the oldest lead
        age = i / max(1, rows - 1)  # 0 oldest .. 1 newest
        source = rng.choices(SOURCES, _SOURCE_WEIGHTS)[0]
        occupation = rng.choices(OCCUPATIONS, (60, 8, 2, 0.5, 0.3, 0.2))[0]
        visits = None if rng.random() < 0.015 else min(250, int(rng.expovariate(1 / 3.4)))
        seconds = 0 if rng.random() < 0.24 else int(rng.lognormvariate(6.3, 0.9))
        views = None if visits is None else round(rng.uniform(1, 6), 2) if visits else 0
        margin = (-1.4 + 1.6 * age + 0.0011 * seconds + _SOURCE_EFFECT.get(source, 0.0)
                  + (2.4 if occupation == "Working Professional" else 0.0) + rng.gauss(0, 0.8))
        won = rng.random() < 1 / (1 + math.exp(-margin))
        tags = rng.choice(TAGS_WON if won else TAGS_LOST) if rng.random() < 0.65 else ""
        activity_index = rng.choice(("01.High", "02.Medium", "03.Low", ""))
        if formatted_numbers:
            seconds_text = _thousands(seconds)  # "1,532"
            views_text = "" if views is None else f"{views}".replace(".", ",")  # "2,5"
        else:
            seconds_text = str(seconds)
            views_text = "" if views is None else f"{views}"
        records.append([
            str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(579_533 + i), rng.choice(ORIGINS),
            source, rng.choices(("No", "Yes"), (92, 8))[0], rng.choices(("No", "Yes"), (99.9, 0.1))[0],
            "1" if won else "0",
            "" if visits is None else str(visits), seconds_text, views_text, rng.choice(ACTIVITIES),
            rng.choices(("India", "", "United States", "Singapore"), (70, 26, 0.8, 0.3))[0],
            rng.choice(SPECIALIZATIONS), rng.choice(("Select", "Online Search", "Word Of Mouth", "")),
            occupation, "Better Career Prospects", "No", "No", "No", "No", "No", "No", "No", "No", tags,
            rng.choice(("", "Might be", "Not Sure", "High in Relevance", "Worst")),
            "No", "No", rng.choice(("Select", "Potential Lead", "Other Leads", "")), rng.choice(CITIES),
            activity_index, rng.choice(("01.High", "02.Medium", "")), str(rng.randint(7, 18)),
            str(rng.randint(11, 20)), "No", rng.choice(("No", "Yes")), rng.choice(ACTIVITIES),
        ])
    if newest_first:
        records.reverse()
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(records)
    return path
