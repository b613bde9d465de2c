"""The pipeline board: columns of deals by stage, filters, load more, and moving deals safely.

A move is shown at once and saved behind it, as Trello and Pipedrive do: the drop's handler moves
the card in the board it holds (the columns' counts and sums go with it) and answers without waiting
for the database. It also starts the write as a task of the web worker (`_write_move`), outside the
tab's state: the task writes the move (crm_app/move_writer.py: in a thread, or a writer process)
and hands the outcome back as an event of the tab (`move_written`), which shows the saved card,
offers Undo and starts the card's next move, if the user moved it again meanwhile (one write at a
time per card, so the second expects the version the first left). A move the database refuses
(someone changed the deal, the user may not, the database is away) puts the card back where it was
and says why. Until a move is written the card is marked as saving,
and every redraw from the database shows it where it was dropped, not where the database still has it.

Why a task and an event rather than a Reflex background event: a background event enters the tab's
state (`async with self`) once for each step (take the move, after the write, to find none left), and
with several web workers on Redis each entry takes the tab's lock; those entries racing the tab's own
events lost lock wake-ups inside Reflex's opportunistic lock and waited out the 60 s lock expiry
(3 workers: 2.4 moves/s at 10 tabs, one move 60 s). Now a move takes the state twice: the drop and
its outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time

import reflex as rx
from reflex_base.event import Event
from reflex_base.event.context import EventContext

from crm_app import move_writer
from crm_app.db.outage import database_unavailable
from crm_app.domain import Source, Stage, Tier
from crm_app.services.errors import ServiceError
from crm_app.services.leads import log_activity
from crm_app.services.pipeline import (
    MAX_CARDS,
    PAGE,
    STAGES,
    BoardColumn,
    BoardFilter,
    DealCard,
    board_columns,
    board_with_card,
    board_with_move,
    column_cards,
    deal_card,
    find_card,
)
from crm_app.services.undo import undo_stage_move
from crm_app.state.base import (
    SESSION_ENDED, AppState, now_utc, picked, typed_text, whole_number)
from crm_app.state.undo import TOO_LATE, issue_ticket, take_ticket, undo_toast
from crm_app.state.close_deal import CloseDealState
from crm_app.state.next_step import NextStepState

ALL = "all"
TIERS = (ALL, *(t.value for t in Tier))
SOURCES = (ALL, *(s.value for s in Source))
RISKS = (ALL, "any", "high")
TEAM, MINE, UNASSIGNED = "team", "mine", "unassigned"
# The stage strip's chips are drop targets too: their column ids are this prefix + the stage.
STRIP_PREFIX = "strip-"


# Bring the moved card into view (it may have been added at the end of a long column).
_SCROLL_TO_CARD = ("window.requestAnimationFrame(() => document.querySelector('[data-card-id=\"%d\"]')"
                   "?.scrollIntoView({block: 'nearest', inline: 'nearest'}))")

LOGGABLE = ("call", "email_sent", "meeting")  # what the card menu logs

# A move not written after this long was lost with the web worker that was writing it (a restart):
# the board forgets it and shows the database again.
LOST_MOVE_SECONDS = 120.0
DATABASE_AWAY, SAVE_FAILED = move_writer.DATABASE_AWAY, move_writer.SAVE_FAILED

log = logging.getLogger(__name__)

# Writes in flight in this worker (a task nobody holds may be collected before it ends), and their
# outcomes waiting for the tab's `move_written`: {key: (tab, move, card | None, refusal | None, checked,
# time.monotonic() when written)}; `checked`, when the write had to check the session first: (the
# user it found, or None), else (). An outcome whose event never came (the tab closed, or its next
# event went to another web worker) is dropped after LOST_MOVE_SECONDS, when the tab has forgotten
# the move too (`_forget_lost_moves`): without it the dict grew by every such move for the worker's life.
_writing: set[asyncio.Task] = set()
_written: dict[str, tuple] = {}
# Keys of _written: a counter, not a random token. They need no secrecy (move_written checks that the
# outcome is the claiming tab's own), and os.urandom releases the interpreter lock, so on the event loop
# each call waited for a move-writing thread to hand the lock back (py-spy at 50 tabs: ~9% of the
# loop's samples were in token_urlsafe, half of them here).
# The process id keeps them apart from another web worker's, should an event reach the wrong one.
_keys = itertools.count(1)


async def _write_move(tab: str, move: dict, token: str, check_session: bool) -> None:
    """Write one move, outside the tab's state (crm_app/move_writer.py: in a thread of this worker,
    or a writer process with CRM_MOVE_WRITERS), and hand the outcome to the tab as an event. Runs
    in the context of the drop's event (asyncio copies it), so it enqueues for that tab (`tab`, its
    client token; `token` is the browser's session token). With `check_session` the session's
    check is due: made there, not in the drop's handler."""
    checked, card, reason = await move_writer.write(move, token, check_session, now_utc())
    if reason is move_writer.SESSION_ENDED:
        reason = SESSION_ENDED
    _forget_unclaimed(time.monotonic())
    key = f"{os.getpid()}-{next(_keys)}"
    _written[key] = (tab, move, card, reason, checked, time.monotonic())
    try:
        await EventContext.get().enqueue(*Event.from_event_type(PipelineState.move_written(key)))
    except Exception:  # the worker is stopping: the tab forgets the move after LOST_MOVE_SECONDS
        _written.pop(key, None)
        log.exception("Could not hand the written move of lead %s to its tab", move["lead_id"])


def _forget_unclaimed(now: float) -> int:
    """Drop outcomes no tab claimed within LOST_MOVE_SECONDS (oldest first: the dict keeps insertion
    order, so the sweep stops at the first young one); the number dropped."""
    dropped = 0
    for key, outcome in list(_written.items()):
        if now - outcome[-1] < LOST_MOVE_SECONDS:
            break
        del _written[key]
        dropped += 1
    return dropped


def _empty_board() -> list[BoardColumn]:
    return [BoardColumn(stage=s, label=Stage(s).label) for s in STAGES]


class PipelineState(AppState):
    # The board: one entry per stage, in funnel order, each with at most MAX_CARDS cards. The page
    # reads it as one var per column (`_show`), so a move sends the two columns it changed, not all
    # eight (a rep's full board is ~80 KB of JSON at 100,000 leads).
    _board: list[BoardColumn] = _empty_board()
    column_new: BoardColumn = _empty_board()[0]
    column_contacted: BoardColumn = _empty_board()[1]
    column_qualified: BoardColumn = _empty_board()[2]
    column_meeting: BoardColumn = _empty_board()[3]
    column_proposal: BoardColumn = _empty_board()[4]
    column_negotiation: BoardColumn = _empty_board()[5]
    column_won: BoardColumn = _empty_board()[6]
    column_lost: BoardColumn = _empty_board()[7]
    open_summary: str = "0 open deals"
    ready: bool = False  # the board shows data from the database (not the prerendered default)
    owner: str = ""  # team | mine | unassigned | "<user id>" (a manager looking at one rep)
    tier: str = ALL
    source: str = ALL
    search: str = ""
    only_stagnating: bool = False
    risk: str = ALL  # all | any (medium or high) | high
    # The last move the server refused, shown above the board until the next action.
    move_error: str = ""
    phone_stage: str = STAGES[0]  # the one column a phone shows (assets/crm.css)
    _read_at: float = 0.0  # time.time() when the board was last read (live updates)
    # The card just moved (dropped, moved from its menu, or moved back by Undo): highlighted, and kept
    # in its new column's loaded cards even when it ranks below them.
    highlight_id: int = 0
    _undo_tickets: dict[str, dict] = {}
    # Moves shown on the board and not written yet, oldest first: {lead_id, name, from, to, user_id,
    # version (None: the version the previous move of this card leaves), started (time.time() once a
    # `_write_move` task is writing it, else 0)}.
    _pending_moves: list[dict] = []

    # Derived from held state only ------------------------------------------------------------
    @rx.var
    def owner_options(self) -> list[list[str]]:
        """What the owner filter offers: a manager sees the team or any rep; a rep, theirs or the pool."""
        if self._is_manager():
            return [[TEAM, "Whole team"], [UNASSIGNED, "Unassigned"],
                    *[[str(u.id), u.name] for u in self.users if u.role == "rep"]]
        return [[MINE, "My deals"], [UNASSIGNED, "Unassigned"]]


    @rx.var
    def filtered(self) -> bool:
        return bool(self.search.strip()) or self.only_stagnating or ALL not in (self.tier, self.source, self.risk)

    # Helpers -----------------------------------------------------------------------------------
    def _is_manager(self) -> bool:
        return any(str(u.id) == self.viewer_id and u.role != "rep" for u in self.users)

    def _default_owner(self) -> str:
        return TEAM if self._is_manager() else MINE

    def _owner_is_allowed(self) -> bool:
        return self.owner in {key for key, _ in self.owner_options}

    def _filter(self) -> BoardFilter:
        if self.owner == UNASSIGNED:
            owner_id = 0
        elif self._is_manager() and self.owner == TEAM:
            owner_id = None
        elif self._is_manager() and self.owner.isdecimal():
            owner_id = int(self.owner)
        else:  # a rep sees their own deals (or the pool), never another rep's
            owner_id = self.viewer_int()
        pick = lambda value: None if value == ALL else value  # noqa: E731
        return BoardFilter(owner_id=owner_id, tier=pick(self.tier), source=pick(self.source),
                           search=self.search.strip() or None, only_stagnating=self.only_stagnating,
                           risk=self.risk if self.risk in ("any", "high") else None)

    def _held(self) -> list[BoardColumn]:
        """The board as plain objects (not through Reflex's change-tracking proxies, which cost a
        wrapper per attribute read and would nest inside new lists): it is only ever replaced whole,
        never changed in place."""
        board = self._board
        return list(getattr(board, "__wrapped__", board))

    def _show(self, columns: list[BoardColumn], stages: list[str] | None = None) -> None:
        """Hold `columns` as the board and hand the page the columns of `stages` (all by default)."""
        self._board = columns
        for column in columns:
            if stages is None or column.stage in stages:
                setattr(self, f"column_{column.stage}", column)
        deals = sum(c.count for c in columns if not Stage(c.stage).is_closed)
        stuck = sum(c.stagnating for c in columns)
        summary = f"{deals:,} open deal{'s' if deals != 1 else ''}" + (f" · {stuck:,} stuck" if stuck else "")
        if summary != self.open_summary:
            self.open_summary = summary

    def _find(self, lead_id: int) -> DealCard | None:
        return find_card(self._held(), lead_id) if lead_id is not None else None

    def _is_saving(self, lead_id: int) -> bool:
        return any(move["lead_id"] == lead_id for move in self._pending_moves)

    def _with_pending_moves(self, columns: list[BoardColumn]) -> list[BoardColumn]:
        """Columns read from the database, with the moves not written yet shown where they were
        dropped (a card that is not on these columns is left alone)."""
        targets = {move["lead_id"]: move["to"] for move in self._pending_moves}  # the last move wins
        for lead_id, to_stage in targets.items():
            card = find_card(columns, lead_id)
            if card is None:
                continue
            if card.stage != to_stage:
                columns = board_with_move(columns, lead_id, to_stage, saving=True)
            else:
                columns = board_with_card(columns, dataclasses.replace(card, saving=True))
        return columns

    async def _refilter(self) -> None:
        """The user changed what the board shows: an old refusal message no longer applies."""
        self.move_error = ""
        await self._reload_board()

    async def _reload_board(self) -> None:
        self._read_at = time.time()
        flt, now = self._filter(), now_utc()
        columns = await self._db(lambda s: board_columns(s, flt=flt, now=now, limit=PAGE))
        self._show(self._with_pending_moves(columns))
        self.highlight_id = 0
        self.ready = True

    async def _reload_stages(self, stages: list[str], extra: int = 0, keep_in_view: int = 0) -> None:
        """Reload some columns, keeping as many cards as they show now (what "load more" added).
        `keep_in_view`: a deal just moved, added at the end of its new column when it ranks below the
        loaded cards (or the filter would hide it), so the user sees where it went."""
        flt, now = self._filter(), now_utc()
        shown = {c.stage: len(c.cards) for c in self._held()}
        limits = {s: max(PAGE, shown.get(s, 0) + extra) for s in stages}

        def read(session):
            columns = board_columns(session, flt=flt, now=now, limits=limits, stages=stages)
            moved = deal_card(session, lead_id=keep_in_view, now=now) if keep_in_view else None
            return columns, moved

        columns, moved = await self._db(read)
        if moved is not None:
            for column in columns:
                if column.stage == moved.stage and all(c.id != moved.id for c in column.cards):
                    column.cards = [*column.cards, moved]
        fresh = {c.stage: c for c in columns}
        self._show(self._with_pending_moves([fresh.get(c.stage, c) for c in self._held()]))
        self.highlight_id = moved.id if moved is not None else 0

    @rx.event
    async def refresh_if_changed(self):
        """Every few seconds while the board is open: redraw it when deals it can show have changed
        (another rep's move, a score the REST API changed), keeping what "load more" added."""
        self._forget_lost_moves()
        if self.ready and await self._news_since(self._read_at):
            self._read_at = time.time()
            await self._reload_stages(list(STAGES), keep_in_view=self.highlight_id)

    # Page and filters ----------------------------------------------------------------------------
    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        if not self._owner_is_allowed():
            self.owner = self._default_owner()
        self.move_error = ""
        await self._reload_board()

    @rx.event
    async def set_owner(self, value: str):
        self.owner = typed_text(value, 12)
        if not self._owner_is_allowed():
            self.owner = self._default_owner()
        await self._refilter()

    @rx.event
    async def set_tier(self, value: str):
        self.tier = picked(value, TIERS, self.tier)
        await self._refilter()

    @rx.event
    async def set_source(self, value: str):
        self.source = picked(value, SOURCES, self.source)
        await self._refilter()

    @rx.event
    async def set_search(self, value: str):
        self.search = typed_text(value, 200)
        await self._refilter()

    @rx.event
    async def set_only_stagnating(self, value: bool):
        self.only_stagnating = value is True
        await self._refilter()

    @rx.event
    async def set_risk(self, value: str):
        self.risk = picked(value, RISKS, self.risk)
        await self._refilter()

    @rx.event
    async def clear_filters(self):
        self.tier = self.source = self.risk = ALL
        self.search = ""
        self.only_stagnating = False
        await self._refilter()

    @rx.event
    async def load_more(self, stage: str):
        column = next((c for c in self._held() if isinstance(stage, str) and c.stage == stage), None)
        if column is None or not column.cards or len(column.cards) >= min(column.count, MAX_CARDS):
            return
        last, room = column.cards[-1], MAX_CARDS - len(column.cards)
        flt, now = self._filter(), now_utc()
        more = await self._db(lambda s: column_cards(
            s, stage=stage, flt=flt, now=now, after=(last.score, last.id), limit=min(PAGE, room)))
        # Scores move while the board is open (a rescore, the sweep): a card already shown can
        # come round again after the last one's score; it is shown once.
        shown = {card.id for card in column.cards}
        more = [card for card in more if card.id not in shown]
        self._show([dataclasses.replace(c, cards=[*c.cards, *more]) if c.stage == stage else c
                    for c in self._held()], [stage])

    # Moving deals ---------------------------------------------------------------------------------
    async def _move(self, lead_id: int, to_stage: str):
        card = self._find(whole_number(lead_id))
        if card is None or not isinstance(to_stage, str) or to_stage not in STAGES:
            # Not on this board any more (or a bad stage): show the truth again.
            await self._reload_board()
            return rx.toast.error("That deal is no longer on this board.")
        if card.stage == to_stage:
            # A drop within its own column: the order is by score, so the column stays as it is
            # (sent again, so the browser puts back a card it showed at the dropped position).
            self._show(self._held(), [to_stage])
            return None
        if Stage(to_stage).is_closed:
            if self._is_saving(card.id):  # the dialog would read the version before that move
                return rx.toast.warning(f"{card.name}'s last move is still being saved: try again in a moment.")
            # Won and Lost ask for their details first; the card stays where it was until then.
            return CloseDealState.ask([card.id], to_stage, "pipeline")
        # Who moves: as the page load checked (a tab nobody is signed in to moves nothing); the write
        # checks again first when that check is RECHECK_SECONDS old, so the drop never waits.
        user = self._checked_user(fresh=False) or await self._actor()
        self._pending_moves = [*self._pending_moves, {
            "lead_id": card.id, "name": card.name, "from": card.stage, "to": to_stage, "user_id": user.id,
            "version": None if self._is_saving(card.id) else card.version, "started": 0.0}]
        self._show(board_with_move(self._held(), card.id, to_stage, saving=True), [card.stage, to_stage])
        self.highlight_id = card.id
        self.move_error = ""
        self._start_writes()
        return rx.call_script(_SCROLL_TO_CARD % card.id)

    def _next_move(self) -> dict | None:
        """The oldest move no task is writing and whose card has no earlier move still to write,
        marked as being written; None when there is none."""
        seen: set[int] = set()
        for i, move in enumerate(self._pending_moves):
            if not move["started"] and move["lead_id"] not in seen:
                started = {**move, "started": time.time()}
                self._pending_moves = [*self._pending_moves[:i], started, *self._pending_moves[i + 1:]]
                return started
            seen.add(move["lead_id"])
        return None

    def _saved(self, move: dict, card: DealCard | None):
        """A move is written: the card shows what the database has now, the card's next move (if
        the user moved it again meanwhile) expects its new version, and Undo is offered."""
        rest = [m for m in self._pending_moves if m["started"] != move["started"] or m["lead_id"] != move["lead_id"]]
        version = card.version if card is not None else None
        self._pending_moves = [{**m, "version": version} if m["lead_id"] == move["lead_id"] and m["version"] is None
                               else m for m in rest]
        if self._is_saving(move["lead_id"]):
            return None  # moved again meanwhile: the card shows that move, still being written
        if card is None:  # written, and no longer visible to this user: the next redraw drops it
            shown = self._find(move["lead_id"])
            if shown is not None:
                self._show(board_with_card(self._held(), dataclasses.replace(shown, saving=False)), [shown.stage])
            return None
        self._show(board_with_card(self._held(), card), [card.stage])
        self._undo_tickets, token = issue_ticket(self._undo_tickets, {
            "lead_id": card.id, "back_to": move["from"], "version": card.version})
        return undo_toast(f"{move['name']} moved to {Stage(move['to']).label}", PipelineState.undo_move(token))

    def _refused(self, move: dict, reason: str):
        """A move was not written: it and the card's later moves are dropped, and the card goes back
        to the column it left."""
        self._pending_moves = [m for m in self._pending_moves if m["lead_id"] != move["lead_id"]]
        shown = self._find(move["lead_id"])
        self._show(board_with_move(self._held(), move["lead_id"], move["from"], saving=False),
                   [move["from"], shown.stage] if shown is not None else [])
        card = self._find(move["lead_id"])
        if card is not None and card.saving:  # back already (it was moved there again)
            self._show(board_with_card(self._held(), dataclasses.replace(card, saving=False)), [card.stage])
        self.move_error = reason
        return rx.toast.error("Move not saved", description=reason, duration=8000)

    def _forget_lost_moves(self) -> None:
        """Moves a web worker took to write and never finished (it restarted) are dropped; the next
        redraw shows what the database has."""
        cutoff = time.time() - LOST_MOVE_SECONDS
        if any(0 < m["started"] < cutoff for m in self._pending_moves):
            self._pending_moves = [m for m in self._pending_moves if not 0 < m["started"] < cutoff]
            self._read_at = 0.0  # redraw at once

    def _start_writes(self) -> None:
        """Start a write for every move that can be written now (the oldest of each card's moves
        not being written yet)."""
        tab, token, check = self.router.session.client_token, self._session_token(), self._checked_user() is None
        while (move := self._next_move()) is not None:
            task = asyncio.create_task(_write_move(tab, move, token, check))
            _writing.add(task)
            task.add_done_callback(_writing.discard)

    @rx.event
    def move_written(self, key: str):
        """A write started by this tab ended (`_write_move`): show its outcome, start what waited."""
        outcome = _written.get(key) if isinstance(key, str) else None
        if outcome is None or outcome[0] != self.router.session.client_token:
            return None  # not this tab's (a crafted event), or already shown
        del _written[key]
        _, move, card, reason, checked, _at = outcome
        if not any(m["lead_id"] == move["lead_id"] and m["started"] == move["started"] for m in self._pending_moves):
            return None  # forgotten meanwhile (_forget_lost_moves): the board shows the database
        if checked:
            self._set_user(checked[0])
        if reason == SESSION_ENDED:
            shown = self._refused(move, reason)
            self._start_writes()  # the card's later moves, refused the same way
            return [shown, self._sign_in_redirect()]
        # (_saved answers None when the card was moved again meanwhile: a list may not hold None.)
        shown = self._saved(move, card) if reason is None else [self._refused(move, reason), PipelineState.show_truth]
        self._start_writes()
        return shown

    @rx.event
    async def show_truth(self):
        """After a refused move: the board as the database has it (the deal may have moved elsewhere
        meanwhile). While the database is away the card simply stays where it went back to."""
        try:
            await self._reload_board()
        except Exception as error:
            if not database_unavailable(error):
                raise

    @rx.event
    async def undo_move(self, token: str):
        """The toast's Undo: the deal goes back to the stage it left, as a stage change of its own."""
        self._undo_tickets, undo = take_ticket(self._undo_tickets, token)
        if undo is None:
            return rx.toast.warning(TOO_LATE)
        lead_id, back_to, version, now = undo["lead_id"], undo["back_to"], undo["version"], now_utc()
        try:
            lead = await self._db(lambda s: undo_stage_move(
                s, lead_id=lead_id, back_to=back_to, expected_version=version, now=now))
        except ServiceError as error:
            await self._reload_board()
            return rx.toast.error("Not undone", description=str(error), duration=8000)
        await self._reload_stages(list(STAGES), keep_in_view=lead_id)
        return [rx.call_script(_SCROLL_TO_CARD % lead_id),
                rx.toast.success(f"Undone: {lead.name} is back in {Stage(back_to).label}")]

    @rx.event
    async def move_card(self, card_id: str, to_column: str, to_index: int):
        """A card dropped on a column (drag and drop, mouse or keyboard)."""
        if whole_number(card_id) is None:
            return None
        if isinstance(to_column, str) and to_column.startswith(STRIP_PREFIX):
            to_column = to_column.removeprefix(STRIP_PREFIX)  # dropped on the stage strip's chip
        return await self._move(card_id, to_column)

    @rx.event
    async def move_from_menu(self, lead_id: int, to_stage: str):
        """The card menu's "Move to" items."""
        return await self._move(lead_id, to_stage)

    @rx.event
    def show_stage(self, stage: str):
        """A phone shows one column: this one."""
        self.phone_stage = picked(stage, STAGES, self.phone_stage)

    @rx.event
    async def after_close(self):
        """A deal was marked Won or Lost through the dialog: redraw the board."""
        self.move_error = ""
        await self._reload_stages(list(STAGES))

    @rx.event
    async def after_next_step(self):
        await self._reload_stages(list(STAGES))

    @rx.event
    async def log_from_card(self, lead_id: int, kind: str):
        """The card menu's "Log": a call, email or meeting, then the offer of a next step."""
        card = self._find(whole_number(lead_id))
        if card is None or kind not in LOGGABLE:
            return rx.toast.error("That deal is no longer on this board.")
        lead_id, name, now = card.id, card.name, now_utc()
        try:
            await self._db(lambda s: log_activity(s, lead_id=lead_id, kind=kind, now=now))
        except ServiceError as error:
            await self._reload_board()
            return rx.toast.error(str(error))
        await self._reload_stages([card.stage])
        return [rx.toast.success(f"Logged for {name}"), NextStepState.offer(lead_id, name, "pipeline", kind)]

    @rx.event
    def dismiss_error(self):
        self.move_error = ""
