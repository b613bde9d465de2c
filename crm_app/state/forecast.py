"""The forecast page: won revenue this month and next with its interval, the deals carrying it, the
target and the gap; for managers, the targets editor and the backtest."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from crm_app import charts
from crm_app.db.queries import money
from crm_app.forecasting.backtest import METHOD_LABELS
from crm_app.services.analytics import percent_label
from crm_app.services.errors import InvalidInput
from crm_app.services.forecast import (
    BacktestRow,
    DealRow,
    TargetRow,
    WindowRow,
    Forecast,
    build_forecast,
    run_backtest,
    sales_targets,
    set_sales_target,
)
from crm_app.services.forecast_snapshots import precomputed_backtest, precomputed_forecast
from crm_app.state.base import EMPTY_FIGURE, AppState, db_as, figure_data, now_utc, picked, typed_text

EVERYONE = "all"


@dataclass
class MethodRow:
    method: str
    label: str
    mape_label: str
    coverage_label: str


class ForecastState(AppState):
    owner: str = ""  # EVERYONE or a rep's id (managers choose; a rep always sees their own)
    loaded: bool = False
    windows: list[WindowRow] = []
    deals: list[DealRow] = []
    open_deals: int = 0
    won_label: str = "$0"
    expected_label: str = "$0"
    total_label: str = "$0"
    interval_label: str = ""
    top_share_label: str = ""
    probability_note: str = ""
    has_target: bool = False
    target_label: str = ""
    gap_label: str = ""
    gap_message: str = ""
    below_target: bool = False
    calibrating: bool = False  # the interval is the simulation's until the past months' errors are in
    # How fresh the job worker's precomputed forecast is (forecast_snapshots): "" when fresh, else why
    # not (deals changed since, the worker has not refreshed it, or none stored: computed here).
    freshness_note: str = ""
    backtest_note: str = ""

    targets: list[TargetRow] = []
    target_drafts: dict[str, str] = {}
    target_error_for: str = ""
    target_error: str = ""

    backtest_loaded: bool = False
    backtest_rows: list[BacktestRow] = []
    method_rows: list[MethodRow] = []
    backtest_figure: dict = EMPTY_FIGURE  # JSON data (state/base.figure_data)
    _owner_chosen_for: str = ""

    @rx.var
    def owner_options(self) -> list[list[str]]:
        return [[EVERYONE, "Whole team"]] + [[str(u.id), u.name] for u in self.users if u.role == "rep"]

    @rx.var
    def scope_label(self) -> str:
        if self.owner == EVERYONE:
            return "Whole team"
        return next((u.name for u in self.users if str(u.id) == self.owner), "")

    def _owner_id(self) -> int | None:
        if not self.viewer_is_manager:
            return self.viewer_int()
        return int(self.owner) if self.owner.isdecimal() else None

    async def _refresh(self) -> None:
        """The forecast the job worker stored (with today's target), else built here without waiting
        for the calibration (`calibrating`: the `complete` event follows)."""
        owner_id, now = self._owner_id(), now_utc()
        stored = await self._db(lambda s: precomputed_forecast(s, owner_id=owner_id, now=now))
        forecast = stored.value or await self._db(lambda s: build_forecast(s, owner_id=owner_id, now=now,
                                                                           wait_for_calibration=False))
        self._show(forecast)
        self.freshness_note = stored.note
        if self.viewer_is_manager:
            team = self.users
            self.targets = await self._db(lambda s: sales_targets(s, team))
            self.target_drafts = {t.key: t.target for t in self.targets}
        self.loaded = True

    def _show(self, forecast: Forecast) -> None:
        self.windows, self.deals, self.open_deals = forecast.windows, forecast.deals, forecast.open_deals
        self.won_label = money(forecast.won_so_far)
        self.expected_label = money(forecast.expected_rest)
        self.total_label = money(forecast.this_month_total)
        self.interval_label = f"{money(forecast.this_month_low)} – {money(forecast.this_month_high)}"
        self.top_share_label, self.probability_note = forecast.top_share_label, forecast.probability_note
        self.has_target = forecast.target is not None
        self.target_label = money(forecast.target) if forecast.target is not None else ""
        gap = forecast.gap or 0.0
        self.below_target = gap > 0
        self.gap_label = f"{money(gap)} short" if gap > 0 else f"{money(-gap)} ahead"
        self.gap_message = forecast.gap_message
        self.calibrating = not forecast.calibrated

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        if self._owner_chosen_for != self.viewer_id:
            self.owner = EVERYONE if self.viewer_is_manager else self.viewer_id
            self._owner_chosen_for = self.viewer_id
        self.loaded = self.backtest_loaded = False
        return ForecastState.complete

    @rx.event(background=True)
    async def complete(self):
        """The page's slow work, off its event queue (the page stays usable; a result for an owner no
        longer shown is dropped). First what the job worker precomputed (forecast_snapshots: one
        look-up each for the forecast and the managers' backtest). Only what it has not stored yet is
        built here, as before: the forecast with the simulation's interval (the history fitted as of
        now: seconds at 100,000 leads until cached), then this month's interval calibrated by the past
        months' errors (minutes at 100,000 leads until stored), then the backtest."""
        async with self:
            owner_id, now, manager = self._owner_id(), now_utc(), self.viewer_is_manager
            user_id = (await self._actor()).id
            needs_view, team = not self.loaded, self.users
        if needs_view:
            stored = await db_as(user_id, lambda s: precomputed_forecast(s, owner_id=owner_id, now=now))
            forecast = stored.value or await db_as(user_id, lambda s: build_forecast(
                s, owner_id=owner_id, now=now, wait_for_calibration=False))
            targets = await db_as(user_id, lambda s: sales_targets(s, team)) if manager else None
            async with self:
                if self._owner_id() != owner_id:
                    return
                self._show(forecast)
                self.freshness_note = stored.note
                if targets is not None:
                    self.targets, self.target_drafts = targets, {t.key: t.target for t in targets}
                self.loaded = True
        async with self:
            needs_calibration, needs_backtest = self.calibrating, manager and not self.backtest_loaded
        if needs_calibration:
            forecast = await db_as(user_id, lambda s: build_forecast(s, owner_id=owner_id, now=now))
            async with self:
                if self._owner_id() == owner_id:
                    self._show(forecast)
        if needs_backtest:
            stored = await db_as(user_id, lambda s: precomputed_backtest(s, owner_id=owner_id, now=now))
            backtest = stored.value or await db_as(user_id, lambda s: run_backtest(s, owner_id=owner_id,
                                                                                    now=now))
            async with self:
                if self._owner_id() == owner_id:
                    self._show_backtest(backtest)
                    self.backtest_note = stored.note

    def _show_backtest(self, backtest) -> None:
        self.backtest_rows = backtest.rows
        self.method_rows = [
            MethodRow(method=s.method, label=METHOD_LABELS[s.method],
                      mape_label=percent_label(s.mape), coverage_label=percent_label(s.coverage))
            for s in backtest.scores
        ]
        months = backtest.months
        self.backtest_figure = figure_data(charts.forecast_backtest(
            [m.label for m in months], [m.actual for m in months],
            [(m.predictions["forecast"].expected, m.predictions["forecast"].low, m.predictions["forecast"].high)
             for m in months],
            [m.predictions["stage_weighted"].expected for m in months],
            [m.predictions["run_rate"].expected for m in months],
        ))
        self.backtest_loaded = True

    @rx.event
    async def set_owner(self, value: str):
        if not self.viewer_is_manager:
            return
        self.owner = picked(value, {key for key, _ in self.owner_options}, self.owner)
        self.loaded = self.backtest_loaded = False
        return ForecastState.complete

    @rx.event
    def set_target_draft(self, user_id: str, value: str):
        if str(user_id) in self.target_drafts:  # only the rows shown
            self.target_drafts[str(user_id)] = typed_text(value, 20)

    @rx.event
    async def save_target(self, user_id: str):
        user_id = str(user_id)
        if user_id not in {t.key for t in self.targets}:
            return
        actor = await self._actor()
        typed, now = self.target_drafts.get(user_id, ""), now_utc()
        self.target_error_for = self.target_error = ""
        try:
            await self._db(lambda s: set_sales_target(s, user_id=int(user_id) or None, typed=typed, now=now,
                                                      actor=actor))
        except InvalidInput as error:
            self.target_error_for, self.target_error = user_id, str(error)
            return
        await self._refresh()
        return [rx.toast.success("Target saved.", position="top-center"), ForecastState.complete]
