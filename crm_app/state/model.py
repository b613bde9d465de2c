"""The model page: the engine choice, training and rescoring progress, and the shown model's report.

Managers only (the signed-in user's role, AppState.viewer_is_manager): every handler that changes
something checks it, not just the page. Training and rescoring are queued for a job worker process
(crm_app/tasks.py; this process never trains or rescores) and record their progress in PostgreSQL;
this state polls it with a background event while a job runs, so progress survives a reload and
shows in every web worker.
"""

from __future__ import annotations

import asyncio

import reflex as rx

from crm_app import charts
from crm_app.services.errors import InvalidInput, NotFound, ServiceError
from crm_app.services.model_report import (
    DriverRow,
    FieldRow,
    MeasureRow,
    ModelPage,
    ModelVersionRow,
    TierChangeRow,
    model_page,
)
from crm_app.services.model_training import HistoryCounts, activate_model
from crm_app.services.scoring import ENGINE_MODES, engine_config
from crm_app.services.scoring_jobs import (
    RESCORE,
    TRAIN,
    JobView,
    rescore_if_changed,
    start_job,
)
from crm_app.services.scoring_settings import parse_blend_percent, set_engine_choice
from crm_app.services.switch_impact import switch_impact
from crm_app.state.base import (
    EMPTY_FIGURE, AppState, db_as, figure_data, now_utc, picked, typed_text, whole_number)

POLL_SECONDS = 1.0
MANAGERS_ONLY = "Only a manager can change how leads are scored."


class ModelState(AppState):
    loaded: bool = False
    # The engine choice and what really scores.
    mode: str = "rules"
    blend_draft: str = "50"
    blend_error: str = ""
    effective_label: str = ""
    engine_note: str = ""
    won: int = 0
    lost: int = 0
    enough_history: bool = False
    action_message: str = ""
    # Jobs: the newest of each kind.
    train_status: str = ""
    train_percent: int = 0
    train_message: str = ""
    train_error: str = ""
    rescore_status: str = ""
    rescore_percent: int = 0
    rescore_message: str = ""
    rescore_error: str = ""
    polling: bool = False
    # The shown model (the active one, else the newest).
    has_model: bool = False
    shown_version: int = 0
    shown_active: bool = False
    trained_at: str = ""
    trained_rows: int = 0
    holdout_rows: int = 0
    holdout_from: str = ""
    trees: int = 0
    calibration_method: str = ""
    features_at: str = ""
    validation: str = ""
    method_note: str = ""
    fit_note: str = ""
    measures: list[MeasureRow] = []
    time_measures: list[MeasureRow] = []
    time_note: str = ""
    drivers: list[DriverRow] = []
    versions: list[ModelVersionRow] = []
    # Custom fields the leak and id guard flagged for the shown model, and which the manager keeps in
    # the next training (ticked; starts from what the shown model kept).
    fields: list[FieldRow] = []
    keep_fields: list[str] = []
    # What scoring with the shown model would change (when it does not score yet).
    has_preview: bool = False
    preview_sentence: str = ""
    preview_tiers: list[TierChangeRow] = []
    _shown_id: int = 0  # the model the report below was drawn for
    # The confirmation a switch of engine asks first, with what it changes (services/switch_impact.py).
    confirm_open: bool = False
    confirm_title: str = ""
    confirm_impact: str = ""
    confirm_detail: str = ""
    _pending_switch: dict = {}
    _saved_mode: str = ""  # the team's engine as stored (`mode` may show the blend editor before its Save)
    # The charts' figures as JSON data (state/base.figure_data: a go.Figure is slow to unpickle).
    calibration_figure: dict = EMPTY_FIGURE
    gains_figure: dict = EMPTY_FIGURE
    drivers_figure: dict = EMPTY_FIGURE

    @rx.var
    def training_running(self) -> bool:
        return self.train_status == "running"

    @rx.var
    def rescoring_running(self) -> bool:
        return self.rescore_status == "running"

    @rx.var
    def history_label(self) -> str:
        closed = self.won + self.lost
        return f"{closed:,} closed deals to learn from ({self.won:,} won, {self.lost:,} lost)"

    @rx.var
    def missing_label(self) -> str:
        return HistoryCounts(self.won, self.lost).missing

    # --- Loading ----------------------------------------------------------------------------

    def _show_job(self, kind: str, job: JobView | None) -> None:
        values = ("", 0, "", "") if job is None else (job.status, job.percent, job.message, job.error)
        if kind == TRAIN:
            self.train_status, self.train_percent, self.train_message, self.train_error = values
        else:
            self.rescore_status, self.rescore_percent, self.rescore_message, self.rescore_error = values

    def _show(self, page: ModelPage, keep_draft: bool = False) -> None:
        status = page.status
        self.mode = self._saved_mode = status.mode
        if not keep_draft:
            self.blend_draft = status.blend_percent
        self.effective_label = status.effective_label
        self.engine_note = status.note
        self.won, self.lost, self.enough_history = status.won, status.lost, status.enough_history
        self.versions = page.versions
        self._show_job(TRAIN, page.training)
        self._show_job(RESCORE, page.rescoring)
        if page.preview_counted:  # else the page keeps the preview it shows
            preview = page.preview
            self.has_preview = preview is not None
            self.preview_sentence = preview.sentence if preview else ""
            self.preview_tiers = preview.tiers if preview else []
        shown = page.shown
        self.has_model = shown is not None
        if shown is None:
            self.measures, self.drivers, self.fields, self._shown_id = [], [], [], 0
            return
        if shown.id == self._shown_id and shown.is_active == self.shown_active:
            return  # the same model as shown: polling sends only the jobs' progress, not the figures again
        self._shown_id = shown.id
        self.shown_version, self.shown_active = shown.version, shown.is_active
        self.trained_at, self.trained_rows, self.holdout_rows = shown.trained_at, shown.rows, shown.holdout_rows
        self.holdout_from, self.trees, self.calibration_method = shown.holdout_from, shown.trees, shown.calibration_method
        self.features_at = (
            "each deal as it was at a moment of its open life" if shown.features_at == "open_life"
            else "each deal as it was when it closed"
        )
        self.measures, self.drivers = shown.measures, shown.drivers
        self.validation, self.method_note, self.fit_note = shown.validation, shown.method_note, shown.fit_note
        self.time_measures, self.time_note = shown.time_measures, shown.time_note
        self.fields = shown.fields
        self.keep_fields = [f.key for f in shown.fields if f.kept]
        metrics = shown.metrics
        as_points = lambda table: [(b["predicted"], b["observed"], b["count"]) for b in table]  # noqa: E731
        self.calibration_figure = figure_data(charts.calibration(
            as_points(metrics["model"]["calibration"]), as_points(metrics["rules"]["calibration"])
        ))
        gains = metrics.get("gains")
        self.gains_figure = (
            figure_data(charts.cumulative_gains(gains["shares"], gains["model"], gains["rules"])) if gains
            else EMPTY_FIGURE
        )
        self.drivers_figure = figure_data(
            charts.share_bars([d.title for d in shown.drivers], [d.share for d in shown.drivers]))

    async def _refresh(self, keep_draft: bool = False) -> None:
        now = now_utc()
        self._show(await self._db(lambda s: model_page(s, now=now)), keep_draft=keep_draft)
        self.loaded = True

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.action_message, self.blend_error = "", ""
        if not self.viewer_is_manager:
            return  # a rep gets the refusal, not the numbers
        await self._refresh()
        if self.training_running or self.rescoring_running:
            return ModelState.poll

    # --- Polling while a job runs -------------------------------------------------------------

    @rx.event(background=True)
    async def poll(self):
        async with self:
            if self.polling or not self.viewer_is_manager:
                return  # one poller per page, and only for a manager
            self.polling = True
            user_id = (await self._actor()).id
        try:
            while True:
                await asyncio.sleep(POLL_SECONDS)
                now = now_utc()
                # Read outside the state lock, so the page's own events are not held up by the query;
                # the switch preview (an aggregate over the open leads) only once the jobs are done.
                page = await db_as(user_id, lambda s: model_page(s, now=now, with_preview=False))
                if not (page.training and page.training.running or page.rescoring and page.rescoring.running):
                    page = await db_as(user_id, lambda s: model_page(s, now=now))
                async with self:
                    self._show(page, keep_draft=True)
                    if not (self.training_running or self.rescoring_running):
                        break
        finally:
            async with self:
                self.polling = False

    # --- Changing things (managers only) -------------------------------------------------------

    @rx.event
    def toggle_keep(self, key: str, keep: bool):
        """Tick (or untick) a flagged field to keep it in the next training."""
        kept = [k for k in self.keep_fields if k != key]
        self.keep_fields = kept + [key] if keep else kept

    @rx.event
    def type_blend(self, value: str):
        self.blend_draft = typed_text(value, 8)
        self.blend_error = ""

    async def _switch(self, mode: str):
        if not self.viewer_is_manager:
            self.action_message = MANAGERS_ONLY
            return None
        typed, now, actor = self.blend_draft, now_utc(), await self._actor()

        def switch(session):
            before, _after = set_engine_choice(session, mode=mode, blend_percent=typed, now=now, actor=actor)
            return rescore_if_changed(session, before, now=now, actor=actor, queue=True)

        try:
            job_id = await self._db(switch)
        except InvalidInput as error:
            if error.field == "blend_weight":
                self.blend_error = str(error)
            else:
                self.action_message = str(error)
            return None
        self.blend_error, self.action_message = "", ""
        await self._refresh()
        return ModelState.poll

    # --- Confirming a switch: the team's ranking changes, so say how before doing it -----------

    async def _ask(self, title: str, action: dict, mode: str, model_id: int | None = None):
        if not self.viewer_is_manager:
            self.action_message = MANAGERS_ONLY
            return
        impact = await self._db(lambda s: switch_impact(s, mode=mode, model_id=model_id))
        self.confirm_title, self.confirm_impact, self.confirm_detail = title, impact.headline, impact.detail
        self._pending_switch, self.confirm_open = action, True

    @rx.event
    def set_confirm_open(self, value: bool):
        self.confirm_open = value is True
        if not self.confirm_open:
            self._pending_switch = {}

    @rx.event
    async def confirm_switch(self):
        action, self._pending_switch, self.confirm_open = self._pending_switch, {}, False
        if action.get("do") == "mode":
            return await self._switch(action["mode"])
        if action.get("do") == "activate":
            return await self._activate(action["model_id"])
        if action.get("do") == "use_model":
            return await self._use_model()
        return None

    @rx.event
    async def choose_mode(self, mode: str | list[str]):
        mode = picked(mode, ENGINE_MODES, "")
        if not mode or mode == self.mode:
            return None
        if mode == self._saved_mode:  # back from the blend editor to what scores now: nothing changes
            self.mode, self.blend_error = mode, ""
            return None
        if mode == "blend":
            # The blend's share is typed first; its Save asks (nothing changes until then).
            if self.viewer_is_manager:
                self.mode, self.blend_error = "blend", ""
            return None
        label = {"rules": "the rules", "model": "the model", "blend": "a blend"}[mode]
        return await self._ask(f"Score the team's leads with {label}?", {"do": "mode", "mode": mode}, mode)

    @rx.event
    async def save_blend(self):
        try:
            parse_blend_percent(self.blend_draft)
        except InvalidInput as error:
            self.blend_error = str(error)
            return None
        return await self._ask("Score the team's leads with this blend?", {"do": "mode", "mode": "blend"}, "blend")

    @rx.event
    async def train(self):
        if not self.viewer_is_manager:
            self.action_message = "Only a manager can train a model."
            return None
        now, actor, keep = now_utc(), await self._actor(), list(self.keep_fields)
        try:
            await self._db(lambda s: start_job(s, kind=TRAIN, now=now, actor=actor,
                                               message="Waiting for a job worker to start",
                                               queue={"keep_fields": keep}))
        except ServiceError as error:
            self.action_message = str(error)
            return None
        self.action_message = ""
        await self._refresh(keep_draft=True)
        return ModelState.poll

    @rx.event
    async def activate(self, model_id: int):
        model_id = whole_number(model_id)
        if model_id is None or not any(v.id == model_id for v in self.versions):
            return None
        version = next(v.version for v in self.versions if v.id == model_id)
        return await self._ask(f"Activate model v{version}?", {"do": "activate", "model_id": model_id},
                               "model" if self.mode != "rules" else "rules", model_id)

    async def _activate(self, model_id: int):
        if not self.viewer_is_manager:
            self.action_message = "Only a manager can choose the active model."
            return None
        now, actor = now_utc(), await self._actor()

        def activate_and_rescore(session):
            before = engine_config(session)
            activate_model(session, model_id, actor=actor, now=now)
            return rescore_if_changed(session, before, now=now, actor=actor, queue=True)

        try:
            job_id = await self._db(activate_and_rescore)
        except NotFound as error:
            self.action_message = str(error)
            return None
        self.action_message = ""
        await self._refresh(keep_draft=True)
        return ModelState.poll

    @rx.event
    async def use_model(self):
        """Ask first, saying what changes: the button's confirmation."""
        return await self._ask(f"Score leads with model v{self.shown_version}?", {"do": "use_model"}, "model",
                               self._shown_id or None)

    async def _use_model(self):
        """Score the leads with the shown model: make it the active one and the team's engine, then
        rescore the open leads and the closed deals it learned from (a background job)."""
        if not self.viewer_is_manager:
            self.action_message = MANAGERS_ONLY
            return None
        model_id, now, actor = self._shown_id, now_utc(), await self._actor()

        def switch(session):
            before = engine_config(session)
            activate_model(session, model_id, actor=actor, now=now)
            set_engine_choice(session, mode="model", now=now, actor=actor)
            return rescore_if_changed(session, before, now=now, actor=actor, queue=True)

        try:
            job_id = await self._db(switch)
        except ServiceError as error:
            self.action_message = str(error)
            return None
        self.action_message = ""
        await self._refresh(keep_draft=True)
        return ModelState.poll
