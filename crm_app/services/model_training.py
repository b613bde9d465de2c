"""Use cases of the predictive score: train a model on the team's closed deals, keep it in the model
registry (table `scoring_models`), make one the active model, and load the active one to score with.

Training reads every closed lead and its activities in two bulk queries (plain rows, no ORM object per
row), builds each lead's features as of one moment of its open life (not its close: see
`open_life_moment`) from the activities before it, and hands them to the pure training code
(crm_app/scoring/training.py), which checks the custom fields for leaks and ids, fits the model, and
measures it and the rules: on the newest deals when the close dates tell them apart, else by
cross-validation. What the model page draws (gains curves, named drivers, fields left out) is stored
with the metrics; every closed deal's out-of-fold score and every open lead's preview score go to
`model_scores` (see services/out_of_fold.py). Slow (seconds to minutes): run it as a background job
(services/scoring_jobs.py) and pass `progress`.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import json.encoder
import logging
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, text
from sqlmodel import Session

from crm_app.db.models import ScoringModel, utcnow
from crm_app.domain import ActivityKind, Stage
from crm_app.scoring.engine import ActivityFact, LeadFacts, check_points_add_up, tier_for
from crm_app.scoring.evaluation import Evaluation
from crm_app.scoring.features import ACTIVITY_KINDS, ACTIVITY_ORDER, group_title, open_life_moment
from crm_app.scoring.model import ModelScoringEngine, OutdatedModel
from crm_app.scoring.training import (
    MIN_CLOSED,
    MIN_EACH_OUTCOME,
    ORDER_NEWEST_FIRST,
    ORDER_OLDEST_FIRST,
    LabeledLead,
    TrainingResult,
    check_history,
    dates_tell_apart,
    fit_scoring_model,
)
from crm_app.scoring.training import NotEnoughHistory as _NotEnoughHistory
from crm_app.services import audit
from crm_app.services.errors import NotFound, ServiceError
from crm_app.services.permissions import CurrentUser, require_manager

logger = logging.getLogger(__name__)


class NotEnoughHistory(ServiceError):
    """Too few closed deals (or of one outcome) to train on; the message says how many are needed."""


@dataclass(frozen=True)
class TrainingReport:
    """What a training run stored and how the model and the rules did on the newest closed leads."""

    model_id: int
    version: int
    trained_at: datetime
    rows: int
    holdout_rows: int  # 0 when the figures are a cross-validation
    validation: str  # "holdout" or "cross_validation"
    model: Evaluation
    rules: Evaluation
    base_rate_brier: float
    seconds: float
    summary: str
    metrics: dict[str, Any]
    fit_rows: int  # the deals the scoring model's trees were fit on
    honest_rows: int  # closed deals stored with a score from a model that did not learn from them


@dataclass(frozen=True)
class ModelRow:
    """One stored model, as a list of models shows it."""

    id: int
    version: int
    trained_at: datetime
    rows: int
    is_active: bool
    model_roc_auc: float | None
    rules_roc_auc: float | None


_CLOSED = f"l.stage IN ('{Stage.WON.value}', '{Stage.LOST.value}') AND l.closed_at IS NOT NULL AND l.closed_at <= :now"
_KINDS = {kind.value: kind for kind in ActivityKind}
_json_text = json.encoder.encode_basestring_ascii  # a str as json.dumps writes it (quoted, ASCII)


def load_closed_leads(session: Session, *, now: datetime, at_close: bool = False,
                      newest: int | None = None) -> list[LabeledLead]:
    """Every lead closed by `now` (or the `newest` of them by close), oldest close first, each as it
    was at one moment of its open life (`open_life_moment`) with only the prospect's activities
    before that moment; `at_close` takes them at the close instead (what earlier versions trained on,
    kept to measure the difference). Only the prospect's own kinds are read: they are all that the
    features, the rules and the reasons look at (a rep's calls, emails and notes are a third of the
    rows)."""
    closed = f"SELECT l.* FROM leads l WHERE {_CLOSED}"
    if newest is not None:
        closed += " ORDER BY l.closed_at DESC, l.id DESC LIMIT :newest"
    rows = session.execute(
        text(
            f"""
            SELECT l.id, l.company_size, l.source, l.custom_fields::text AS custom_fields, l.created_at,
                   l.closed_at, l.stage
              FROM ({closed}) l
             ORDER BY l.closed_at, l.id
            """
        ),
        {"now": now, "newest": newest},
    ).all()
    moments = [row.closed_at if at_close else open_life_moment(row.id, row.created_at, row.closed_at)
               for row in rows]
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    # Each lead's activities before its moment, read through ix_activities_lead_occurred, which
    # carries the kind (migration 0040): one index-only probe per lead, so the cost follows the deals
    # read, not the table (a join to the closed leads scanned all 10.5M activities at a million leads:
    # ~16 s for the newest 100,000 deals). The ids and moments go as two array literals (exact to the
    # microsecond; a list of 100,000 parameters would be parsed element by element). Streamed on the
    # driver's own server-side cursor, as plain tuples: SQLAlchemy's result rows cost most of the load.
    if rows:
        with session.connection().connection.cursor(name="closed_lead_activities") as cursor:
            cursor.itersize = 50_000
            cursor.execute(
                """
                SELECT a.lead_id, a.kind, a.occurred_at
                  FROM unnest(%(ids)s::int[], %(moments)s::timestamptz[]) AS l(id, moment)
                  JOIN activities a ON a.lead_id = l.id AND a.occurred_at < l.moment
                 WHERE a.kind = ANY(%(kinds)s)
                """,
                {"ids": "{" + ",".join(str(row.id) for row in rows) + "}",
                 "moments": "{" + ",".join(moment.isoformat() for moment in moments) + "}",
                 "kinds": [kind.value for kind in ACTIVITY_ORDER]},
            )
            for lead_id, kind, occurred_at in cursor:
                activities[lead_id].append(ActivityFact(_KINDS[kind], occurred_at))
    # Custom fields come as text, parsed once per distinct text: leads with the same values share one
    # dict (read only, like all facts), so features compute each one's values once (FeatureSpec.matrix).
    parsed: dict[str | None, dict[str, Any]] = {}
    return [
        LabeledLead(
            facts=LeadFacts(
                company_size=row.company_size,
                source=row.source,
                activities=tuple(activities.get(row.id, ())),
                custom_fields=_fields(row.custom_fields, parsed),
            ),
            closed_at=row.closed_at,
            won=row.stage == Stage.WON.value,
            as_of=None if at_close else moment,
            lead_id=row.id,
        )
        for row, moment in zip(rows, moments)
    ]


@dataclass(frozen=True)
class HistoryCounts:
    """Closed deals a model could learn from, next to what it needs."""

    won: int
    lost: int
    needed_closed: int = MIN_CLOSED
    needed_each: int = MIN_EACH_OUTCOME

    @property
    def enough(self) -> bool:
        return (
            self.won + self.lost >= self.needed_closed
            and self.won >= self.needed_each
            and self.lost >= self.needed_each
        )

    @property
    def missing(self) -> str:
        """What is still missing, in a sentence; empty when there is enough."""
        wants = []
        if self.won + self.lost < self.needed_closed:
            wants.append(f"{self.needed_closed - self.won - self.lost:,} more closed deals")
        if self.won < self.needed_each:
            wants.append(f"{self.needed_each - self.won:,} more won")
        if self.lost < self.needed_each:
            wants.append(f"{self.needed_each - self.lost:,} more lost")
        return " and ".join(wants)


# The model page's history counts, per database and viewer: counting the closed deals reads every one
# of them (~0.7 s at 1M leads). They are counted again when the closed deals' totals that the database
# keeps (`board_totals`, migration 0029: a close, a reopen, a deletion, a new value move them) changed,
# or after HISTORY_COUNTS_SECONDS (a close date edited alone, or one later than the `now` counted at).
HISTORY_COUNTS_SECONDS = 600
_history_cache: dict[tuple, tuple[tuple, datetime, tuple[int, int]]] = {}
_history_lock = threading.Lock()
_CLOSED_TOTALS = """
SELECT crm_acting_user() AS viewer, crm_sees_team() AS team,
       (SELECT array_agg(t ORDER BY t) FROM (
            SELECT stage || ':' || sum(deals) || ':' || sum(value) AS t FROM board_totals
             WHERE stage IN ('won', 'lost') GROUP BY stage) x) AS totals
"""


def history_counts(session: Session, *, now: datetime) -> HistoryCounts:
    """How many won and lost deals there are to learn from: counted once (one aggregate query), then
    reused while the closed deals' kept totals stay the same (see HISTORY_COUNTS_SECONDS)."""
    row = session.execute(text(_CLOSED_TOTALS)).one()
    bind = session.get_bind()
    url = getattr(bind, "url", None) or bind.engine.url
    key = (f"{url.host}:{url.port}/{url.database}", row.viewer, row.team)
    fingerprint = tuple(row.totals or ())
    with _history_lock:
        cached = _history_cache.get(key)
    if cached is not None and cached[0] == fingerprint and abs((now - cached[1]).total_seconds()) <= HISTORY_COUNTS_SECONDS:
        return HistoryCounts(*cached[2])
    counts = _closed_counts(session, now)
    with _history_lock:
        _history_cache[key] = (fingerprint, now, counts)
    return HistoryCounts(*counts)


def _closed_counts(session: Session, now: datetime) -> tuple[int, int]:
    won, lost = session.execute(
        text(
            f"SELECT count(*) FILTER (WHERE l.stage = 'won'), count(*) FILTER (WHERE l.stage = 'lost') "
            f"FROM leads l WHERE {_CLOSED}"
        ),
        {"now": now},
    ).one()
    return won, lost


@dataclass(frozen=True)
class HistoryTimeline:
    """The closed deals oldest first, as training should take them, and what their dates are worth."""

    leads: list[LabeledLead]
    dates_usable: bool  # the close dates tell the newest deals apart
    declared: str | None  # without usable dates: the order the import said the file lists them in


def history_timeline(session: Session, leads: list[LabeledLead]) -> HistoryTimeline:
    """Whether the closed deals' dates can tell the newest apart, and if not, the order the manager
    declared when importing them (`imports.row_order`, one answer for all of them).

    Dates are unusable when the newest fifth's close moments are shared by more than half of it
    (training.dates_tell_apart: an import without dates closes its deals at the import moment), or
    when the import said so for most of that fifth (`leads.dates_known`). With a declared order, the
    undated deals of each import are put in it by their file row (`leads.import_row`; newest first:
    the first row is the newest), which training then holds out the newest fifth of, besides its
    cross-validation."""
    info = {
        row.id: row
        for row in session.execute(
            text("SELECT l.id, l.dates_known, l.import_id, l.import_row, i.row_order FROM leads l "
                 "LEFT JOIN imports i ON i.id = l.import_id WHERE l.id = ANY(:ids)"),
            {"ids": [lead.lead_id for lead in leads if lead.lead_id is not None]},
        )
    }
    undated = [lead for lead in leads if lead.lead_id in info and not info[lead.lead_id].dates_known]
    newest = leads[-max(1, round(0.2 * len(leads))):] if leads else []
    said_undated = sum(not info[l.lead_id].dates_known for l in newest if l.lead_id in info) > len(newest) / 2
    if dates_tell_apart([lead.closed_at for lead in leads]) and not said_undated:
        return HistoryTimeline(leads, True, None)
    # Each import keeps the order its manager declared; the page names the one most undated deals
    # came with (a small earlier import without an answer must not hide a large declared one).
    said = Counter(info[lead.lead_id].row_order for lead in undated
                   if info[lead.lead_id].row_order in (ORDER_NEWEST_FIRST, ORDER_OLDEST_FIRST))
    declared, declared_count = said.most_common(1)[0] if said else (None, 0)
    if declared is None or declared_count <= len(undated) / 2:
        return HistoryTimeline(leads, False, None)

    def position(lead: LabeledLead) -> tuple:
        row = info.get(lead.lead_id)
        if row is None or row.dates_known or row.import_row is None:
            return (lead.closed_at, 0, 0)
        sign = -1 if row.row_order == ORDER_NEWEST_FIRST else 1
        return (lead.closed_at, row.import_id, sign * row.import_row)

    return HistoryTimeline(sorted(leads, key=position), False, declared)


def train_model(
    session: Session,
    *,
    now: datetime,
    progress: Callable[[str], None] | None = None,
    trained_by: int | None = None,
    at_close: bool = False,
    keep_fields: Collection[str] = (),
    newest: int | None = None,
) -> TrainingReport:
    """Train a model on the deals closed by `now`, store it (inactive) with its metrics, every closed
    deal's out-of-fold score and the open leads' preview scores, and commit. `keep_fields` names custom
    fields the manager keeps although the guard flagged them (a leak or an id). `newest`: learn from
    that many of the newest closed deals only (the benchmark's sample at a million leads).

    Raises NotEnoughHistory below 200 closed deals or 30 of either outcome: the rules keep scoring.
    """
    say = progress or (lambda message: None)
    try:
        check_history(*_closed_counts(session, now))  # before loading anything
    except _NotEnoughHistory as error:
        raise NotEnoughHistory(str(error)) from None
    with _collected_less():
        return _train(session, now=now, say=say, trained_by=trained_by, at_close=at_close, keep_fields=keep_fields,
                      newest=newest)


@contextmanager
def _collected_less() -> Iterator[None]:
    """No cyclic garbage collection while a model trains (in the whole process: the job worker runs
    one training at a time): objects still go when their last reference does, and what training
    makes is nearly all without cycles (tuples, dataclasses, strings, arrays). Loading a million
    activities as objects and wording 100,000 deals' reasons (~3M small objects) set off a pass every
    few hundred allocations, each walking much of what the training holds: with the loaded deals
    frozen out of the passes (as before), still ~25% of the explanations' CPU at a million leads
    (9.8 s -> 7.3 s side by side). What existed at the start stays frozen until the end; collection
    then resumes as it was."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


def _train(session: Session, *, now: datetime, say: Callable[[str], None], trained_by: int | None, at_close: bool,
           keep_fields: Collection[str], newest: int | None) -> TrainingReport:
    say("Loading closed leads and their activities")
    timeline = history_timeline(session, load_closed_leads(session, now=now, at_close=at_close, newest=newest))
    leads = timeline.leads
    # The open leads are read while the model trains (after the closed deals: the two reads compete
    # for the same disk and cores; the fits are Python's alone).
    open_leads = _OpenLeadReader(session, now)
    try:
        result = fit_scoring_model(leads, progress=say, meta={"trained_at": now.isoformat()},
                                   keep_order=timeline.declared is not None, history_order=timeline.declared,
                                   dates_usable=timeline.dates_usable, keep_fields=set(keep_fields))
    except _NotEnoughHistory as error:
        open_leads.cancel()
        raise NotEnoughHistory(str(error)) from None
    except BaseException:
        open_leads.cancel()
        raise
    metrics = {**result.metrics(), **_chart_metrics(result, leads, at_close)}
    try:
        # One training at a time picks the next version number (held to the commit). The model's row
        # comes first, so that the out-of-fold scores can be stored while they are computed.
        session.execute(text("LOCK TABLE scoring_models IN EXCLUSIVE MODE"))
        version = session.execute(text("SELECT coalesce(max(version), 0) + 1 FROM scoring_models")).scalar_one()
        engine = result.engine
        engine.meta["version"] = version
        row = ScoringModel(
            version=version,
            trained_at=now,
            rows=result.rows,
            features=engine.spec.as_dict(),
            metrics=metrics,
            is_active=False,
            model=engine.to_bytes(),
            trained_by=trained_by,
        )
        session.add(row)
        session.flush()
        say(f"Scoring the {result.rows:,} closed deals, each with a model that did not learn from it")
        honest_rows = _store_out_of_fold(session, row.id, result)
        say("Previewing the open leads with the new model")
        preview = _preview_open_leads(result.engine, open_leads.result(), now)
    except BaseException:
        open_leads.cancel()
        raise
    say("Saving the model")
    _store_preview(session, row.id, preview)
    _prune_model_scores(session, version)
    session.commit()
    say(f"Model version {version} saved")
    return TrainingReport(
        model_id=row.id,
        version=version,
        trained_at=now,
        rows=result.rows,
        holdout_rows=result.holdout_rows,
        validation=result.validation,
        model=result.model,
        rules=result.rules,
        base_rate_brier=result.base_rate_brier,
        seconds=result.seconds,
        summary=result.summary(),
        metrics=metrics,
        fit_rows=result.fit_rows,
        honest_rows=honest_rows,
    )


# Out-of-fold scores keep their reasons for the active model and this many newest versions; older
# versions keep the scores only (a closed deal then reads "Scored by a model that did not learn from
# this deal"), and their open-lead previews go: at 100,000 deals the reasons are ~40 MB a version.
KEEP_REASONS_OF = 3


def _store_out_of_fold(session: Session, model_id: int, result: TrainingResult) -> int:
    """Store every closed deal's out-of-fold score with its reasons (as `model_scores` rows) while they
    are computed: one COPY on the session's connection, fed batch by batch from a thread, so that the
    database parses, indexes and checks one batch (~5-8 s for 100,000 rows with their reasons, most of
    it the two indexes and foreign keys) while Python explains the next. How many rows it stored."""
    feed = _CopyFeed()
    failed: list[BaseException] = []

    def copy() -> None:
        try:
            session.connection().connection.cursor().copy_expert(
                "COPY model_scores (model_id, lead_id, score, tier, reasons, out_of_fold) "
                "FROM STDIN WITH (FORMAT csv)",
                feed,
            )
        except BaseException as error:  # raised below, in the training's thread
            failed.append(error)
            feed.stop()

    session.connection()  # the transaction begins here; the thread only uses its connection
    writer = threading.Thread(target=copy, name="out-of-fold-copy", daemon=True)
    writer.start()
    stored = 0
    try:
        # Batches of up to a fold (at 100,000 deals): each batch's TreeSHAP runs tree by tree once
        # per class of rows, so fewer, larger batches cost less (40,000 rows: -25% CPU against 10,000s).
        for part, explained in result.honest_explanations(20_000):
            buffer = io.StringIO()
            out = csv.writer(buffer)
            for i, e in zip(part.tolist(), explained):
                lead_id = result.ordered[i].lead_id
                if lead_id:
                    # Each result's score, tier and reasons (Explanation.result), written without
                    # making it; with each reason's fact key (not kept on leads), so a blend shows one
                    # line per fact.
                    reasons = e.reason_parts()
                    check_points_add_up(e.score, (points for points, _, _ in reasons))
                    out.writerow((model_id, lead_id, e.score, tier_for(e.score).value, _reasons_json(reasons), "t"))
                    stored += 1
            if not feed.put(buffer.getvalue()):
                break  # the COPY failed: raised below
        feed.put("")  # the end of the rows
    except BaseException:
        feed.fail()
        writer.join()  # the COPY is aborted: the caller's rollback ends the transaction
        raise
    writer.join()
    if failed:
        raise failed[0]
    return stored


def _reasons_json(reasons: Sequence[tuple[int, str, str]]) -> str:
    """json.dumps([{**Reason(*r).as_dict(), "key": r[2]} for r in reasons]), the same text (default
    separators, ASCII), written without a dict per reason: a closed deal's stored reasons with each
    fact's key (not kept on leads), so a blend shows one line per fact. A tenth of the out-of-fold
    step's CPU went to json.dumps of 100,000 deals' small dicts."""
    return "[" + ", ".join(
        f'{{"points": {int(points)}, "text": {_json_text(text)}, "key": {_json_text(key)}}}'
        for points, text, key in reasons
    ) + "]"


class _CopyFeed:
    """A file for psycopg2's copy_expert whose reads wait for the blocks another thread puts ("" ends
    the COPY; `fail` makes the next read raise, which aborts it)."""

    def __init__(self) -> None:
        self._blocks: queue.Queue[str | None] = queue.Queue(maxsize=4)
        self._stopped = False

    def put(self, block: str) -> bool:
        """Hand over a block of rows; False once the COPY has stopped reading."""
        while not self._stopped:
            try:
                self._blocks.put(block, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def fail(self) -> None:
        self._stopped = True
        while True:  # the blocks not read yet are dropped, so the end fits (one producer)
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                break
        self._blocks.put_nowait(None)

    def stop(self) -> None:
        self._stopped = True

    def read(self, size: int = -1) -> str:
        block = self._blocks.get()
        if block is None:
            raise RuntimeError("training stopped while storing the out-of-fold scores")
        return block


def _store_preview(session: Session, model_id: int, preview: list[tuple[int, int]]) -> None:
    """The open leads' preview as one row of two arrays (`model_previews`: as rows of model_scores,
    480,000 foreign-key checks and index entries at a million leads, 11-21 s; the model page only
    counts them). `preview` is in lead id order (_preview_open_leads)."""
    if preview:
        line = "{}\t{{{}}}\t{{{}}}\n".format(model_id, ",".join(str(lead_id) for lead_id, _ in preview),
                                           ",".join(str(score) for _, score in preview))
        session.connection().connection.cursor().copy_expert(
            "COPY model_previews (model_id, lead_ids, scores) FROM STDIN", io.StringIO(line))


def _prune_model_scores(session: Session, newest_version: int) -> None:
    old = ("model_id IN (SELECT id FROM scoring_models WHERE NOT is_active AND version <= :cut)")
    params = {"cut": newest_version - KEEP_REASONS_OF}
    session.execute(
        text(f"UPDATE model_scores SET reasons = NULL WHERE reasons IS NOT NULL AND {old}"), params
    )
    session.execute(text(f"DELETE FROM model_previews WHERE {old}"), params)


_OPEN = f"stage NOT IN ('{Stage.WON.value}', '{Stage.LOST.value}')"


@dataclass(frozen=True)
class _OpenLeadActivity:
    """Every open lead (id, company size, source, custom fields as JSON text), by id, and its activity
    as plain numbers: `counts[i, k]` activities of kind ACTIVITY_KINDS[k] up to `now`, the latest of
    them at `latest[i, k]` microseconds since the epoch (FeatureSpec.matrix_of_counts)."""

    leads: list[tuple]
    counts: np.ndarray
    latest: np.ndarray


def _read_open_lead_activity(cursor, now: datetime) -> _OpenLeadActivity:
    """The switch preview's reading: grouped by the database in one pass over the activities and
    copied out as plain numbers (no Python object per activity or per count), parsed into arrays here,
    in the reader's thread while the trees are fit (at a million leads, ~1.5M lines). At a million
    leads, batches of open leads by id made the database scan every activity once per batch (2.6 s
    each, for 480,000 open leads 10 of them). Custom fields stay text here (parsed only if the model
    reads them)."""
    kinds = [kind.value for kind in ACTIVITY_KINDS]
    cursor.execute(f"SELECT id, company_size, source, custom_fields::text FROM leads WHERE {_OPEN} ORDER BY id")
    leads = cursor.fetchall()
    counts = np.zeros((len(leads), len(kinds)), dtype=np.int64)
    latest = np.zeros((len(leads), len(kinds)), dtype=np.int64)
    if not leads:
        return _OpenLeadActivity(leads, counts, latest)
    grouped = io.StringIO()
    cursor.copy_expert(
        cursor.mogrify(
            "COPY (SELECT a.lead_id, array_position(%(kinds)s::text[], a.kind::text), count(*), "
            "(extract(epoch FROM max(a.occurred_at)) * 1000000)::bigint "
            f"FROM activities a JOIN leads l ON l.id = a.lead_id AND l.{_OPEN} "
            "WHERE a.occurred_at <= %(now)s AND a.kind = ANY(%(kinds)s) "
            "GROUP BY a.lead_id, a.kind) TO STDOUT WITH (FORMAT csv)",
            {"now": now, "kinds": kinds},
        ).decode(),
        grouped,
    )
    if grouped.tell():
        grouped.seek(0)
        ids = np.array([row[0] for row in leads], dtype=np.int64)
        table = np.loadtxt(grouped, delimiter=",", dtype=np.int64, ndmin=2)
        row = np.searchsorted(ids, table[:, 0])
        known = (row < ids.size) & (ids[np.minimum(row, ids.size - 1)] == table[:, 0])  # opened meanwhile
        row, table = row[known], table[known]
        counts[row, table[:, 1] - 1], latest[row, table[:, 1] - 1] = table[:, 2], table[:, 3]
    return _OpenLeadActivity(leads, counts, latest)


class _OpenLeadReader:
    """Reads the open leads' activity for the preview while the model trains: on a connection of its
    own, in a thread, when the session is bound to an engine (the database groups ~5M activities at a
    million leads while Python fits the trees; the thread mostly waits on the socket, without the
    GIL). A session bound to one connection (a test's transaction, whose rows no other connection
    sees) reads it on that connection when asked. Training does not write what this reads."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session, self._now = session, now
        self._found: _OpenLeadActivity | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        bind = session.get_bind()
        if isinstance(bind, Engine):
            self._thread = threading.Thread(target=self._read_apart, args=(bind,), name="preview-reader",
                                            daemon=True)
            self._thread.start()

    def _read_apart(self, bind: Engine) -> None:
        try:
            connection = self._connection = bind.raw_connection()
            try:
                with connection.cursor() as cursor:
                    self._found = _read_open_lead_activity(cursor, self._now)
                connection.rollback()
            finally:
                connection.close()
        except BaseException as error:  # raised where the result is asked for
            self._error = error

    def cancel(self) -> None:
        """Stop reading (training failed): the statement is cancelled, the thread ends."""
        connection = self._connection
        if self._thread is not None and self._thread.is_alive() and connection is not None:
            try:
                connection.driver_connection.cancel()
            except Exception:  # finished or closed meanwhile
                pass

    def result(self) -> _OpenLeadActivity:
        if self._thread is None:
            return _read_open_lead_activity(self._session.connection().connection.cursor(), self._now)
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._found is not None
        return self._found


def _preview_open_leads(engine: ModelScoringEngine, found: _OpenLeadActivity, now: datetime,
                        batch_size: int = 50_000) -> list[tuple[int, int]]:
    """(lead id, score) of every open lead, by id, as the model scores it now: what switching to it would
    store, without writing a lead. The score needs no reasons, so each lead's activity is one count
    and latest moment per kind (_read_open_lead_activity), and its rows are built column by column."""
    leads = found.leads
    if not leads:
        return []
    with_fields = bool(engine.spec.custom_fields)
    ids = np.array([row[0] for row in leads], dtype=np.int64)
    counts, latest = found.counts, found.latest
    scores = np.empty(len(leads), dtype=np.int64)
    parsed: dict[str | None, dict[str, Any]] = {}  # each distinct custom-fields text parsed once
    for start in range(0, len(leads), batch_size):
        part = slice(start, start + batch_size)
        rows = leads[part]
        matrix = engine.spec.matrix_of_columns([r[2] for r in rows], [r[1] for r in rows],
                                               [_fields(r[3], parsed) for r in rows] if with_fields else None,
                                               counts[part], latest[part], now)
        probability = engine.probabilities(matrix)
        scores[part] = np.clip(np.floor(100 * probability + 0.5), 0, 100).astype(int)
    return list(zip(ids.tolist(), scores.tolist()))


def _fields(text_value: str | None, parsed: dict[str | None, dict[str, Any]]) -> dict[str, Any]:
    fields = parsed.get(text_value)
    if fields is None:
        fields = parsed[text_value] = (json.loads(text_value) if text_value else None) or {}  # JSON null too
    return fields


def _chart_metrics(result: TrainingResult, leads: list[LabeledLead], at_close: bool) -> dict[str, Any]:
    """What the model page draws beyond the stored figures: the strongest feature groups in words with
    their share of the pull, and the history trained on."""
    total_pull = sum(value for _, value in result.drivers) or 1.0
    closed_won = sum(lead.won for lead in leads)
    return {
        "driver_titles": [[group_title(group), value / total_pull] for group, value in result.drivers],
        "features_at": "close" if at_close else "open_life",
        "history": {"won": closed_won, "lost": len(leads) - closed_won},
    }


def activate_model(session: Session, model_id: int, *, actor: CurrentUser | None, now: datetime | None = None) -> None:
    """Make `model_id` the team's one active model (the others stop being active) and commit.
    Forbidden unless `actor` is a manager (None: the tables' owner, see permissions.require_manager)."""
    require_manager(session, actor, "choose the active model")
    actor_id = actor.id if actor is not None else None
    # Serialise activations: each then sees the others' committed result before it changes rows.
    session.execute(text("LOCK TABLE scoring_models IN EXCLUSIVE MODE"))
    if session.get(ScoringModel, model_id) is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    session.execute(
        text("UPDATE scoring_models SET is_active = false WHERE is_active AND id <> :id"), {"id": model_id}
    )
    previous = session.execute(text("SELECT version FROM scoring_models WHERE is_active")).scalar()
    session.execute(text("UPDATE scoring_models SET is_active = true WHERE id = :id"), {"id": model_id})
    version = session.execute(text("SELECT version FROM scoring_models WHERE id = :id"), {"id": model_id}).scalar()
    if previous != version:
        audit.record(session, now=now or utcnow(), actor_id=actor_id, action="model_activated", entity="scoring_model",
                     entity_id=model_id, old={"active_version": previous}, new={"active_version": version})
    session.commit()


def deactivate_models(session: Session, *, actor: CurrentUser | None) -> None:
    """No active model: the rules score the leads again. Commits. Forbidden unless `actor` is a
    manager (None: the tables' owner)."""
    require_manager(session, actor, "choose the active model")
    session.execute(text("UPDATE scoring_models SET is_active = false WHERE is_active"))
    session.commit()


def list_models(session: Session, *, limit: int = 20) -> list[ModelRow]:
    """The newest stored models with their holdout ROC-AUC next to the rules'."""
    rows = session.execute(
        text(
            """
            SELECT id, version, trained_at, rows, is_active,
                   coalesce(metrics #>> '{headline,model,roc_auc}', metrics #>> '{model,roc_auc}')::float
                       AS model_auc,
                   coalesce(metrics #>> '{headline,rules,roc_auc}', metrics #>> '{rules,roc_auc}')::float
                       AS rules_auc
              FROM scoring_models ORDER BY version DESC LIMIT :limit
            """
        ),
        {"limit": limit},
    )
    return [ModelRow(r.id, r.version, r.trained_at, r.rows, r.is_active, r.model_auc, r.rules_auc) for r in rows]


_cache_lock = threading.Lock()
# Keyed by the database too: model ids are only unique within one (tests run several in one process).
_cached: tuple[tuple[str, int], ModelScoringEngine] | None = None


def engine_for_model(session: Session, model_id: int | None) -> ModelScoringEngine | None:
    """A stored model's engine, deserialised only when the model differs from the cached one."""
    global _cached
    if model_id is None:
        return None
    bind = session.get_bind()
    url = getattr(bind, "url", None) or bind.engine.url  # an Engine, or a Connection (tests)
    key = (f"{url.host}:{url.port}/{url.database}", model_id)  # any login to the same database
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
    blob = session.execute(text("SELECT model FROM scoring_models WHERE id = :id"), {"id": model_id}).scalar()
    if blob is None:  # deleted meanwhile
        return None
    try:
        engine = ModelScoringEngine.from_bytes(blob)
    except OutdatedModel:
        # Trained by an earlier version (`cli setup` retrains it): the rules score meanwhile.
        logger.warning("Scoring model %s was trained by an earlier version of the app; the rules score "
                       "until a new model is trained", model_id)
        return None
    with _cache_lock:
        _cached = (key, engine)
    return engine


def load_active_engine(session: Session) -> ModelScoringEngine | None:
    """The active model's engine, or None when there is none (score with the rules).

    Every worker asks the database which model is active (one indexed lookup) and deserialises it
    only when that changed, so all workers score with the same model.
    """
    active_id = session.execute(text("SELECT id FROM scoring_models WHERE is_active")).scalar()
    return engine_for_model(session, active_id)


def stored_metrics(session: Session, model_id: int) -> dict[str, Any]:
    """The metrics stored with a model (for a report page)."""
    metrics = session.execute(
        text("SELECT metrics FROM scoring_models WHERE id = :id"), {"id": model_id}
    ).scalar()
    if metrics is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    return metrics
