"""The pipeline board: columns of deals by stage, filters, load more, and moving deals safely."""

from __future__ import annotations

import time

import reflex as rx

from crm_app.domain import Source, Stage, Tier
from crm_app.services.errors import ServiceError
from crm_app.services.leads import log_activity, move_lead_to_stage
from crm_app.services.pipeline import (
    MAX_CARDS,
    PAGE,
    STAGES,
    BoardColumn,
    BoardFilter,
    DealCard,
    board_columns,
    column_cards,
    deal_card,
)
from crm_app.services.undo import undo_stage_move
from crm_app.state.base import AppState, now_utc, picked, typed_text, whole_number
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


def _empty_board() -> list[BoardColumn]:
    return [BoardColumn(stage=s, label=Stage(s).label) for s in STAGES]


class PipelineState(AppState):
    # One entry per stage, in funnel order, each with at most MAX_CARDS cards.
    columns: list[BoardColumn] = _empty_board()
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

    # Derived from held state only ------------------------------------------------------------
    @rx.var
    def owner_options(self) -> list[list[str]]:
        """What the owner filter offers: a manager sees the team or any rep; a rep, theirs or the pool."""
        if self._is_manager():
            return [[TEAM, "Whole team"], [UNASSIGNED, "Unassigned"],
                    *[[str(u.id), u.name] for u in self.users if u.role == "rep"]]
        return [[MINE, "My deals"], [UNASSIGNED, "Unassigned"]]

    @rx.var
    def open_summary(self) -> str:
        deals = sum(c.count for c in self.columns if not Stage(c.stage).is_closed)
        stuck = sum(c.stagnating for c in self.columns)
        text = f"{deals:,} open deal{'s' if deals != 1 else ''}"
        return text + (f" · {stuck:,} stuck" if stuck else "")

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

    def _find(self, lead_id: int) -> DealCard | None:
        for column in self.columns:
            for card in column.cards:
                if card.id == lead_id:
                    return card
        return None

    async def _refilter(self) -> None:
        """The user changed what the board shows: an old refusal message no longer applies."""
        self.move_error = ""
        await self._reload_board()

    async def _reload_board(self) -> None:
        self._read_at = time.time()
        flt, now = self._filter(), now_utc()
        self.columns = await self._db(lambda s: board_columns(s, flt=flt, now=now, limit=PAGE))
        self.highlight_id = 0
        self.ready = True

    async def _reload_stages(self, stages: list[str], extra: int = 0, keep_in_view: int = 0) -> None:
        """Reload some columns, keeping as many cards as they show now (what "load more" added).
        `keep_in_view`: a deal just moved, added at the end of its new column when it ranks below the
        loaded cards (or the filter would hide it), so the user sees where it went."""
        flt, now = self._filter(), now_utc()
        shown = {c.stage: len(c.cards) for c in self.columns}
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
        self.columns = [fresh.get(c.stage, c) for c in self.columns]
        self.highlight_id = moved.id if moved is not None else 0

    @rx.event
    async def refresh_if_changed(self):
        """Every few seconds while the board is open: redraw it when deals it can show have changed
        (another rep's move, a score the REST API changed), keeping what "load more" added."""
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
        column = next((c for c in self.columns if isinstance(stage, str) and c.stage == stage), None)
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
        self.columns = [
            BoardColumn(stage=c.stage, label=c.label, count=c.count, value_label=c.value_label,
                        stagnating=c.stagnating, cards=[*c.cards, *more],
                        weighted_label=c.weighted_label) if c.stage == stage else c
            for c in self.columns
        ]

    # Moving deals ---------------------------------------------------------------------------------
    async def _move(self, lead_id: int, to_stage: str):
        card = self._find(whole_number(lead_id))
        if card is None or not isinstance(to_stage, str) or to_stage not in STAGES:
            # Not on this board any more (or a bad stage): show the truth again.
            await self._reload_board()
            return rx.toast.error("That deal is no longer on this board.")
        if card.stage == to_stage:
            # A drop within its own column: the order is by score, so just redraw the column.
            await self._reload_stages([to_stage])
            return None
        if Stage(to_stage).is_closed:
            # Won and Lost ask for their details first; the card stays where it was until then.
            return CloseDealState.ask([card.id], to_stage, "pipeline")
        from_stage, version, user_id, now = card.stage, card.version, self.viewer_int(), now_utc()
        try:
            await self._db(lambda s: move_lead_to_stage(
                s, lead_id=lead_id, to_stage=to_stage, now=now, user_id=user_id, expected_version=version))
        except ServiceError as error:
            # Refused: nothing was written. Redraw the whole board from the database (the deal may
            # have moved elsewhere meanwhile), which also puts the dragged card back.
            self.move_error = str(error)
            await self._reload_board()
            return rx.toast.error("Move not saved", description=str(error), duration=8000)
        self.move_error = ""
        await self._reload_stages([from_stage, to_stage], extra=1, keep_in_view=card.id)
        moved = self._find(card.id)
        self._undo_tickets, token = issue_ticket(self._undo_tickets, {
            "lead_id": card.id, "back_to": from_stage, "version": moved.version if moved else version + 1})
        return [rx.call_script(_SCROLL_TO_CARD % card.id),
                undo_toast(f"{card.name} moved to {Stage(to_stage).label}", PipelineState.undo_move(token))]

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
