"""The analytics page: a period and an owner in, a few aggregated rows and four figures out."""

from __future__ import annotations

import asyncio

import reflex as rx

from crm_app import charts
from crm_app.services.analytics import (
    PERIODS,
    AnalyticsReport,
    FunnelRow,
    SourceRoiRow,
    TierConversionRow,
    TierCount,
    analytics_report_concurrently,
    period_filter,
)
from crm_app.scoring.segments import SegmentInsight
from crm_app.services.lost_reasons import LostReasonTable, lost_reason_tables
from crm_app.services.segments import segment_insights
from crm_app.state.base import EMPTY_FIGURE, AppState, figure_data, now_utc, picked

EVERYONE = "all"


class AnalyticsState(AppState):
    # Lost deals per reason, by source and by the stage they were lost from.
    lost_by_source: LostReasonTable = LostReasonTable(columns=[], rows=[])
    lost_by_stage: LostReasonTable = LostReasonTable(columns=[], rows=[])
    period: str = "90d"
    # EVERYONE or a user id; a rep starts on their own leads, a manager on the whole team.
    owner: str = ""
    sources: list[SourceRoiRow] = []
    tiers: list[TierCount] = []
    tier_conversion: list[TierConversionRow] = []
    funnel_rows: list[FunnelRow] = []
    total_leads: int = 0
    undated_leads: int = 0
    closed_with_score: int = 0
    week_count: int = 0
    # The charts' figures as JSON data (state/base.figure_data: a go.Figure is slow to unpickle).
    source_conversion_figure: dict = EMPTY_FIGURE
    source_value_figure: dict = EMPTY_FIGURE
    weekly_figure: dict = EMPTY_FIGURE
    tier_conversion_figure: dict = EMPTY_FIGURE
    funnel_figure: dict = EMPTY_FIGURE
    loading: bool = False
    loaded: bool = False  # the first report has arrived: until then, placeholders, not "No leads"
    segments: list[SegmentInsight] = []
    segment_average: str = ""
    segment_min_support: int = 0
    # The viewer the owner default was chosen for: a new viewer gets their own default again.
    _owner_chosen_for: str = ""

    @rx.var
    def owner_options(self) -> list[list[str]]:
        return [[EVERYONE, "Whole team"]] + [[str(u.id), u.name] for u in self.users]

    @rx.var
    def scope_label(self) -> str:
        label, days = PERIODS.get(self.period, ("", None))
        when = "at any time" if days is None else f"in the {label.lower()}"
        who = "whole team" if self.owner == EVERYONE else next(
            (u.name for u in self.users if str(u.id) == self.owner), "one rep"
        )
        noun = "lead" if self.total_leads == 1 else "leads"
        undated = (f" · {self.undated_leads:,} imported without dates count under All time only"
                   if self.undated_leads else "")
        return f"{self.total_leads:,} {noun} created {when} · {who}{undated}"

    @rx.var
    def has_lost_deals(self) -> bool:
        return bool(self.lost_by_source.rows)

    def _default_owner(self) -> str:
        return EVERYONE if self.viewer_is_manager or self.viewer_int() is None else self.viewer_id

    async def _refresh(self) -> None:
        owner_id = None if self.owner == EVERYONE or not self.owner.isdecimal() else int(self.owner)
        flt = period_filter(self.period, now=now_utc(), owner_id=owner_id)
        self.loading = True
        sessions = await self._acting_sessions()
        report, segments, (self.lost_by_source, self.lost_by_stage) = await asyncio.gather(
            asyncio.to_thread(analytics_report_concurrently, sessions, flt=flt),
            self._db(lambda s: segment_insights(s, flt=flt)),
            self._db(lambda s: lost_reason_tables(s, flt=flt)),
        )
        self._show(report)
        self.segments = segments.insights
        self.segment_average = segments.average_label
        self.segment_min_support = segments.min_support
        self.loading = False

    def _show(self, report: AnalyticsReport) -> None:
        self.sources = report.sources
        self.tiers = report.tiers
        self.tier_conversion = report.tier_conversion
        self.funnel_rows = report.funnel
        self.total_leads = report.total_leads
        self.undated_leads = report.undated_leads
        self.closed_with_score = sum(r.won + r.lost for r in report.tier_conversion)
        self.week_count = len(report.weekly)
        sources = report.sources
        self.source_conversion_figure = figure_data(charts.ranked_bars(
            [r.label for r in sources],
            [r.conversion for r in sources],
            colors=[charts.source_color(r.source) for r in sources],
            text=[f"{r.conversion_label}  ({r.closed_label})" if r.won + r.lost else "nothing closed"
                  for r in sources],
            percent=True,
        ))
        self.source_value_figure = figure_data(charts.ranked_bars(
            [r.label for r in sources],
            [r.revenue_per_lead for r in sources],
            colors=[charts.source_color(r.source) for r in sources],
            text=[f"{r.revenue_per_lead_label} per lead" for r in sources],
            hover=[f"{r.label}: {r.won_revenue_label} won from {r.leads:,} leads" for r in sources],
            money=True,
        ))
        weeks = report.weekly
        self.weekly_figure = figure_data(charts.stacked_tier_bars(
            [w.week_start for w in weeks],
            {"hot": [w.hot for w in weeks], "warm": [w.warm for w in weeks], "cold": [w.cold for w in weeks]},
            x_title="Week the lead was created",
            y_title="Leads",
        ))
        tiers = report.tier_conversion
        self.tier_conversion_figure = figure_data(charts.tier_bars(
            [t.tier for t in tiers],
            [t.conversion for t in tiers],
            text=[t.conversion_label if t.won + t.lost else "" for t in tiers],
            labels=[f"<b>{t.label}</b><br>{t.won + t.lost:,} closed" for t in tiers],
            hover=[f"{t.label}: {t.conversion_label} won ({t.closed_label})" for t in tiers],
        ))
        self.funnel_figure = figure_data(charts.funnel(
            [r.label for r in report.funnel],
            [r.reached for r in report.funnel],
            text=[f"{r.reached_label} · {r.reached_share_label}" for r in report.funnel],
        ))

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        if self._owner_chosen_for != self.viewer_id:
            self.owner = self._default_owner()
            self._owner_chosen_for = self.viewer_id
        await self._refresh()
        self.loaded = True

    @rx.event
    async def set_period(self, value: str | list[str]):
        value = picked(value, PERIODS, "")
        if value:
            self.period = value
            await self._refresh()

    @rx.event
    async def set_owner(self, value: str):
        self.owner = picked(value, {key for key, _ in self.owner_options}, self.owner)
        await self._refresh()
