"""What a learned model sees of a lead: a fixed vector of numbers computed from `LeadFacts` at `now`.

Pure, like the rest of the scoring package: the caller passes the facts and the moment. Only what had
happened by `now` counts, so the same function builds training rows as of a lead's close time (no
activity after the outcome leaks in) and live rows as of the present.

Features come in *groups*: every column belongs to one group, and a model's contributions are
summed per group before they are put into words ("Source is Referral", "Asked for pricing on 2 Dec").

Two kinds of group:
- the lead's *profile* (source, company size, custom fields): facts about who the lead is;
- the prospect's *activity*, one group per kind the prospect does (pricing requests, replies, ...),
  plus the totals across them. Every activity column is *monotone* in buying intent: a count only
  rises with more activity, and "days since" only falls with a newer one ("never" is a long time ago,
  `NEVER_DAYS`, not a missing value a tree could send either way). The model is trained with those
  monotone constraints, so more or newer intent never lowers a score.

A rep's own calls, sent emails and notes are not features at all: they are the rep's work, not the
prospect's intent, and a score a rep lowers by logging a call teaches reps not to log. How recently a
rep reached out belongs to the action queue, not to the score.

Deliberately left out: the lead's age and the stages it went through. At close time they measure the
length and depth of the sales cycle, which the outcome itself decides (won deals go all the way
through the funnel), so a model would learn "old leads win" and misjudge every open lead.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from crm_app.domain import ActivityKind, Source
from crm_app.scoring.engine import LeadFacts
from crm_app.scoring.rules import ENGAGEMENT_KINDS

DAY_SECONDS = 86_400.0
# "Never" for a days-since column: far enough back that any real activity is more recent. Older
# activity is capped here too, so never and ten years ago read alike.
NEVER_DAYS = 3650.0
# A custom field is a feature when at least this share of the training leads carry it ...
MIN_FIELD_SHARE = 0.01
# ... and is numeric when this share of its values are numbers; otherwise it is categorical.
NUMERIC_SHARE = 0.95
MAX_CUSTOM_FIELDS = 50
MAX_CATEGORIES = 30
MIN_CATEGORY_COUNT = 5

# How each kind of activity reads in a sentence: (one, many).
KIND_NOUNS = {
    ActivityKind.EMAIL_OPENED: ("email opened", "emails opened"),
    ActivityKind.EMAIL_CLICKED: ("email link clicked", "email links clicked"),
    ActivityKind.EMAIL_RECEIVED: ("reply received", "replies received"),
    ActivityKind.PAGE_VISIT: ("page visit", "page visits"),
    ActivityKind.PRICING_PAGE_VISIT: ("pricing page visit", "pricing page visits"),
    ActivityKind.PRICING_REQUEST: ("pricing request", "pricing requests"),
    ActivityKind.DEMO_REQUEST: ("demo request", "demo requests"),
    ActivityKind.FORM_SUBMISSION: ("form submitted", "forms submitted"),
    ActivityKind.MEETING: ("meeting", "meetings"),
}
# The prospect's own kinds, in the order their pull is put into words (`ACTIVITY_ORDER`): the
# strongest buying signals first, so each is credited with what it adds on its own.
ACTIVITY_ORDER = (
    ActivityKind.PRICING_REQUEST,
    ActivityKind.DEMO_REQUEST,
    ActivityKind.EMAIL_RECEIVED,
    ActivityKind.FORM_SUBMISSION,
    ActivityKind.MEETING,
    ActivityKind.PRICING_PAGE_VISIT,
    ActivityKind.EMAIL_CLICKED,
    ActivityKind.PAGE_VISIT,
    ActivityKind.EMAIL_OPENED,
)
assert set(ACTIVITY_ORDER) == set(ENGAGEMENT_KINDS), "every prospect kind is a feature, and only those"
_KINDS = tuple(kind for kind in ActivityKind if kind in ENGAGEMENT_KINDS)
_KIND_INDEX = {kind: i for i, kind in enumerate(_KINDS)}
# The prospect's kinds in the order of their feature columns (what `matrix_of_counts` takes).
ACTIVITY_KINDS = _KINDS
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (as PostgreSQL counts a timestamptz)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def open_life_moment(key: int, opened_at: datetime, closed_at: datetime) -> datetime:
    """A moment of a closed lead's open life to take its training features at: spread evenly
    between its creation and its close, pseudo-random but the same for the same lead every time.

    Features as of the close would teach lifecycle effects rather than signals: a lost deal stops
    having meetings before it is closed, so "no meeting" would count against every brand-new open
    lead. Taken inside the open life, training rows look like the open leads the model scores.
    """
    span = closed_at - opened_at
    if span <= timedelta(0):
        return closed_at
    share = int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "big") / 2**64
    return opened_at + span * share


GROUP_TITLES = {
    "source": "Lead source",
    "company_size": "Company size",
    "engagement_count": "Number of interactions",
    "engagement_recency": "Time since the prospect last engaged",
}
# Groups that describe the prospect's activity (the rest describe the lead's profile).
ACTIVITY_TOTAL_GROUPS = ("engagement_count", "engagement_recency")


def group_title(group: str) -> str:
    """A feature group as a manager reads it: `kind:pricing_request` -> `Pricing requests`."""
    if group in GROUP_TITLES:
        return GROUP_TITLES[group]
    if group.startswith("kind:"):
        try:
            many = KIND_NOUNS[ActivityKind(group.removeprefix("kind:"))][1]
        except (KeyError, ValueError):
            return humanize(group.removeprefix("kind:"))
        return many[:1].upper() + many[1:]
    if group.startswith("field:"):
        return humanize(group.removeprefix("field:"))
    return humanize(group)


@dataclass(frozen=True)
class CustomField:
    """One key of `custom_fields` the model uses: a number, or one of the frequent categories."""

    key: str
    kind: str  # "numeric" or "categorical"
    categories: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomField:
        return cls(data["key"], data["kind"], tuple(data.get("categories", ())))


@dataclass(frozen=True)
class Column:
    name: str
    group: str
    # True when the value grows with the passage of time alone (days since something).
    ages: bool = False
    # +1: the score may only rise with the value; -1: only fall; 0: free (XGBoost's convention).
    monotone: int = 0


def _number(value: Any) -> float | None:
    """A custom field's value as a number, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip()


def humanize(key: str) -> str:
    """`company_industry` -> `Company industry`: a field's name as a rep reads it."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else key


@dataclass(frozen=True)
class FeatureSpec:
    """The columns a model was trained on, learned once from the training leads and stored with it."""

    custom_fields: tuple[CustomField, ...] = ()
    columns: tuple[Column, ...] = field(init=False)
    _group_columns: dict[str, list[tuple[str, int]]] = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = [Column(f"source={s.value}", "source") for s in Source]
        columns.append(Column("log_company_size", "company_size"))
        columns.append(Column("engagement_count", "engagement_count", monotone=1))
        columns.append(Column("days_since_engagement", "engagement_recency", ages=True, monotone=-1))
        for kind in _KINDS:
            columns.append(Column(f"count:{kind.value}", f"kind:{kind.value}", monotone=1))
            columns.append(Column(f"days_since:{kind.value}", f"kind:{kind.value}", ages=True, monotone=-1))
        for custom in self.custom_fields:
            group = f"field:{custom.key}"
            if custom.kind == "numeric":
                columns.append(Column(f"field:{custom.key}", group))
            else:
                columns += [Column(f"field:{custom.key}={c}", group) for c in custom.categories]
                columns.append(Column(f"field:{custom.key}=<other>", group))
        object.__setattr__(self, "columns", tuple(columns))
        by_group: dict[str, list[tuple[str, int]]] = {}
        for i, column in enumerate(columns):
            by_group.setdefault(column.group, []).append((column.name, i))
        object.__setattr__(self, "_group_columns", by_group)
        object.__setattr__(self, "_index", {c.name: i for i, c in enumerate(columns)})

    # --- Learning and storing ------------------------------------------------------------------

    @classmethod
    def learn(cls, facts: Sequence[LeadFacts]) -> FeatureSpec:
        """Pick the custom fields worth a column from the training leads: present often enough,
        numbers when they nearly all are, else their most frequent categories."""
        present: Counter[str] = Counter()
        for lead in facts:
            present.update(k for k, v in lead.custom_fields.items() if _category(v) is not None)
        wanted = [k for k, n in present.most_common() if n >= MIN_FIELD_SHARE * len(facts)]
        customs = []
        for key in sorted(wanted[:MAX_CUSTOM_FIELDS]):
            values = [lead.custom_fields.get(key) for lead in facts]
            values = [v for v in values if _category(v) is not None]
            numbers = sum(_number(v) is not None for v in values)
            if numbers >= NUMERIC_SHARE * len(values):
                customs.append(CustomField(key, "numeric"))
                continue
            counts = Counter(_category(v) for v in values)
            categories = sorted(c for c, n in counts.most_common(MAX_CATEGORIES) if n >= MIN_CATEGORY_COUNT)
            if categories:
                customs.append(CustomField(key, "categorical", tuple(categories)))
        return cls(tuple(customs))

    def as_dict(self) -> dict[str, Any]:
        return {
            "custom_fields": [c.as_dict() for c in self.custom_fields],
            "columns": [c.name for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        spec = cls(tuple(CustomField.from_dict(c) for c in data["custom_fields"]))
        if "columns" in data and list(data["columns"]) != [c.name for c in spec.columns]:
            raise ValueError("the stored feature columns do not match this version of the code")
        return spec

    # --- Computing -----------------------------------------------------------------------------

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups in column order, each once."""
        return tuple(dict.fromkeys(c.group for c in self.columns))

    def monotone_constraints(self) -> str:
        """XGBoost's `monotone_constraints` for these columns: intent only ever pushes a score up."""
        return "(" + ",".join(str(c.monotone) for c in self.columns) + ")"

    def activity_columns(self) -> np.ndarray:
        """Indexes of the prospect-activity columns (what a lead with no activity has at their floor)."""
        return np.array([i for i, c in enumerate(self.columns) if c.monotone], dtype=int)

    def no_activity(self, features: np.ndarray) -> np.ndarray:
        """The same rows as if the prospects had done nothing yet: counts 0, every "days since" never."""
        blank = np.array(features, dtype=np.float32, copy=True)
        for i, column in enumerate(self.columns):
            if column.monotone > 0:
                blank[:, i] = 0.0
            elif column.monotone < 0:
                blank[:, i] = NEVER_DAYS
        return blank

    def kind_columns(self, kind: ActivityKind) -> tuple[int, int]:
        """(count, days since) column indexes of one prospect kind."""
        return self._index[f"count:{kind.value}"], self._index[f"days_since:{kind.value}"]

    def total_columns(self) -> tuple[int, int]:
        """(engagement count, days since any engagement) column indexes."""
        return self._index["engagement_count"], self._index["days_since_engagement"]

    def group_matrix(self) -> np.ndarray:
        """columns x groups, 1 where a column belongs to a group: contributions @ this = per group."""
        index = {g: i for i, g in enumerate(self.groups)}
        matrix = np.zeros((len(self.columns), len(index)))
        for row, column in enumerate(self.columns):
            matrix[row, index[column.group]] = 1.0
        return matrix

    def row(self, facts: LeadFacts, now: datetime) -> list[float]:
        """The lead's features as of `now`; NaN where a value is unknown (the model handles it)."""
        return self._activity_row(facts, now) + self._custom_values(facts.custom_fields)

    def _activity_row(self, facts: LeadFacts, now: datetime) -> list[float]:
        """`row` without the custom fields' columns (the source, the size and the activity)."""
        counts = [0] * len(_KINDS)
        latest: list[datetime | None] = [None] * len(_KINDS)
        for activity in facts.activities:
            if activity.occurred_at > now:
                continue  # not known yet at `now`: when training, this keeps the outcome out
            i = _KIND_INDEX.get(activity.kind)
            if i is None:
                continue  # a rep's own call, email or note: their work, not the prospect's intent
            counts[i] += 1
            if latest[i] is None or activity.occurred_at > latest[i]:
                latest[i] = activity.occurred_at
        nan = math.nan
        values: list[float] = [1.0 if facts.source == s.value else 0.0 for s in Source]
        size = facts.company_size
        values.append(math.log1p(size) if size is not None and size >= 0 else nan)
        since = [
            NEVER_DAYS if t is None else min(NEVER_DAYS, (now - t).total_seconds() / DAY_SECONDS) for t in latest
        ]
        values.append(float(sum(counts)))
        values.append(min(since) if since else NEVER_DAYS)
        for n, s in zip(counts, since):
            values += [float(n), s]
        return values

    def matrix_of_counts(
        self, facts: Sequence[LeadFacts], counts: np.ndarray, latest: np.ndarray, now: datetime
    ) -> np.ndarray:
        """`matrix(facts, now)` for leads whose prospect activity comes summarised (the facts' own
        activities are not read): `counts[i, k]` activities of kind `ACTIVITY_KINDS[k]` up to `now`,
        the latest of them at `latest[i, k]` microseconds since the epoch (ignored for a count of 0).
        A GROUP BY in the database instead of every activity as an object, and the rows computed
        column by column: the same numbers as `matrix` (days since are the same float64 divisions)."""
        return self.matrix_of_columns([f.source for f in facts], [f.company_size for f in facts],
                                      [f.custom_fields for f in facts] if self.custom_fields else None,
                                      counts, latest, now)

    def matrix_of_columns(
        self, sources: Sequence[str | None], sizes: Sequence[int | None], fields: Sequence[dict[str, Any]] | None,
        counts: np.ndarray, latest: np.ndarray, now: datetime,
    ) -> np.ndarray:
        """`matrix_of_counts` from the leads' profile as columns (source, company size and custom-fields
        dict of each lead; `fields` may be None when the spec has no custom field), so a caller with
        plain rows (the open leads' preview: 480,000 at a million leads) builds no LeadFacts."""
        rows = len(sources)
        counts = np.asarray(counts, dtype=np.int64).reshape(rows, len(_KINDS))
        latest = np.asarray(latest, dtype=np.int64).reshape(rows, len(_KINDS))
        out = np.empty((rows, len(self.columns)), dtype=np.float64)
        source_values = [s.value for s in Source]
        code = {value: i for i, value in enumerate(source_values)}
        codes = np.array([code.get(x, -1) for x in sources], dtype=np.int64)
        for i in range(len(source_values)):
            out[:, i] = codes == i
        logs = {size: (math.log1p(size) if size is not None and size >= 0 else math.nan) for size in set(sizes)}
        at = len(source_values)
        out[:, at] = [logs[size] for size in sizes]
        now_us = _micros(now)
        since = np.where(counts > 0, (now_us - latest).astype(np.float64) / 1e6 / DAY_SECONDS, NEVER_DAYS)
        since = np.minimum(since, NEVER_DAYS)
        out[:, at + 1] = counts.sum(axis=1).astype(np.float64)
        out[:, at + 2] = since.min(axis=1)
        out[:, at + 3 : at + 3 + 2 * len(_KINDS) : 2] = counts
        out[:, at + 4 : at + 4 + 2 * len(_KINDS) : 2] = since
        if self.custom_fields:
            # Once per custom-fields object: leads that share one (the preview parses each distinct
            # text once) share their values, a row of a small table.
            if fields is None:
                raise ValueError("this spec reads custom fields: pass each lead's")
            known: dict[int, int] = {}
            table: list[list[float]] = []
            which = []
            for f in fields:
                i = known.get(id(f))
                if i is None:
                    i = known[id(f)] = len(table)
                    table.append(self._custom_values(f))
                which.append(i)
            out[:, at + 3 + 2 * len(_KINDS) :] = np.array(table, dtype=np.float64).reshape(len(table), -1)[which]
        return out.astype(np.float32)

    def _custom_values(self, fields: dict[str, Any]) -> list[float]:
        nan = math.nan
        values: list[float] = []
        for custom in self.custom_fields:
            raw = fields.get(custom.key)
            if custom.kind == "numeric":
                number = _number(raw)
                values.append(nan if number is None else number)
            else:
                category = _category(raw)
                if category is None:
                    values += [nan] * (len(custom.categories) + 1)
                else:
                    values += [1.0 if category == c else 0.0 for c in custom.categories]
                    values.append(0.0 if category in custom.categories else 1.0)
        return values

    def matrix(self, facts: Sequence[LeadFacts], now: datetime | Sequence[datetime]) -> np.ndarray:
        """Rows for many leads, at one moment or each at its own (training: each at its close)."""
        moments = [now] * len(facts) if isinstance(now, datetime) else list(now)
        if len(moments) != len(facts):
            raise ValueError("one moment per lead is needed")
        if not facts:
            return np.zeros((0, len(self.columns)), dtype=np.float32)
        if not self.custom_fields:
            return np.array([self.row(f, t) for f, t in zip(facts, moments)], dtype=np.float32)
        # Each custom-fields object's values once (leads loaded from the database share one per
        # distinct value: a few hundred for 100,000 deals).
        known: dict[int, list[float]] = {}
        rows = []
        for f, t in zip(facts, moments):
            custom = known.get(id(f.custom_fields))
            if custom is None:
                custom = known[id(f.custom_fields)] = self._custom_values(f.custom_fields)
            rows.append(self._activity_row(f, t) + custom)
        return np.array(rows, dtype=np.float32)

    # --- Words ---------------------------------------------------------------------------------

    def is_activity(self, group: str) -> bool:
        """True for a group of the prospect's activity (a kind, or the totals across kinds)."""
        return group.startswith("kind:") or group in ACTIVITY_TOTAL_GROUPS

    def is_known(self, group: str, values: np.ndarray) -> bool:
        """Whether a profile group has a value for this lead (an unknown is no fact to name)."""
        cols = [values[i] for _, i in self._group_columns[group]]
        if group == "source":
            return any(v == 1.0 for v in cols)
        return not any(math.isnan(v) for v in cols)

    def known_rows(self, group: str, rows: np.ndarray) -> np.ndarray:
        """`is_known` for every row of `rows` at once (a boolean per row)."""
        cols = rows[:, [i for _, i in self._group_columns[group]]]
        if group == "source":
            return (cols == 1.0).any(axis=1)
        return ~np.isnan(cols).any(axis=1)

    def describe(self, group: str, values: np.ndarray, facts: LeadFacts | None = None) -> str:
        """A profile group's fact for one lead in a sentence, from that lead's row of features (and its
        facts, for a category too rare to have a column of its own). Activity is put into words from
        the activities themselves (`phrases.activity_phrase`), with their dates."""
        cols = {name: values[i] for name, i in self._group_columns[group]}
        if group == "source":
            for s in Source:
                if cols[f"source={s.value}"] == 1.0:
                    return f"Source is {s.label}"
            return "Source unknown"
        if group == "company_size":
            value = cols["log_company_size"]
            if math.isnan(value):
                return "Company size unknown"
            return f"Company has {round(math.expm1(value)):,} employees"
        if group.startswith("field:"):
            key = group.removeprefix("field:")
            custom = next(c for c in self.custom_fields if c.key == key)
            if custom.kind == "numeric":
                value = cols[f"field:{key}"]
                return f"{humanize(key)} unknown" if math.isnan(value) else f"{humanize(key)} is {value:g}"
            for category in custom.categories:
                value = cols[f"field:{key}={category}"]
                if math.isnan(value):
                    return f"{humanize(key)} unknown"
                if value == 1.0:
                    return f"{humanize(key)} is {category}"
            raw = _category(facts.custom_fields.get(key)) if facts is not None else None
            return f"{humanize(key)} is {raw}" if raw else f"{humanize(key)} is an uncommon value"
        raise KeyError(group)
