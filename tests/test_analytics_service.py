"""Analytics read models on a small, known pipeline: every expected number is worked out by hand
from the leads below (see the comments), then the filters must change them accordingly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session

from crm_app.db.models import Lead, SourceCost, StageChange
from crm_app.domain import ActivityKind as K
from crm_app.domain import Source, Stage
from crm_app.services import analytics
from crm_app.services.analytics import AnalyticsFilter, period_filter
from crm_app.services.leads import move_lead_to_stage
from tests.conftest import NOW
from tests.factories import make_lead, make_user

D = timedelta(days=1)


@dataclass
class Pipeline:
    anabel: int
    anatole: int
    leads: dict[str, Lead]


def _walk(session: Session, lead: Lead, moves: list[tuple[Stage, int]], score_at_close: int | None = None):
    """Move a lead through stages at `days ago` moments, as the app would have at the time."""
    for stage, days_ago in moves:
        move_lead_to_stage(session, lead_id=lead.id, to_stage=stage, now=NOW - days_ago * D)
    if score_at_close is not None:
        # The rubric scores these bare leads 0; give each closed deal the score it "had" at close.
        lead.score_at_close = score_at_close
        session.add(lead)
        session.commit()
    session.refresh(lead)


@pytest.fixture
def pipeline(session: Session) -> Pipeline:
    anabel = make_user(session, "Anabel Roi")
    anatole = make_user(session, "Anatole Other")
    L = {}

    def lead(name, source, created_days, value, owner=anabel, **kw):
        L[name] = make_lead(session, name, now=NOW, owner=owner, source=source, deal_value=value,
                            created_ago=created_days * D, **kw)
        return L[name]

    # Anabel's referrals: won after 10 days, won after 20 days, lost, and one still new (Hot).
    _walk(session, lead("Ref One", Source.REFERRAL, 60, 10_000),
          [(Stage.CONTACTED, 58), (Stage.QUALIFIED, 55), (Stage.WON, 50)], score_at_close=85)
    _walk(session, lead("Ref Two", Source.REFERRAL, 40, 20_000),
          [(Stage.CONTACTED, 39), (Stage.WON, 20)], score_at_close=55)
    _walk(session, lead("Ref Three", Source.REFERRAL, 30, 5_000),
          [(Stage.CONTACTED, 28), (Stage.LOST, 25)], score_at_close=75)
    lead("Ref Four", Source.REFERRAL, 10, 4_000, company_size=120,
         activities=[(K.PRICING_REQUEST, timedelta(hours=1)), (K.DEMO_REQUEST, timedelta(hours=2))])
    # Webinars: one lost within 90 days (its arrival recorded as a change), one won 200 days ago.
    w1 = lead("Web One", Source.WEBINAR, 20, 8_000)
    session.add(StageChange(lead_id=w1.id, from_stage=None, to_stage="new", changed_at=NOW - 20 * D))
    session.commit()
    _walk(session, w1, [(Stage.CONTACTED, 18), (Stage.LOST, 15)], score_at_close=20)
    _walk(session, lead("Web Two", Source.WEBINAR, 200, 50_000), [(Stage.WON, 190)], score_at_close=80)
    # An open Warm website lead.
    lead("Site One", Source.WEBSITE, 5, 3_000,
         activities=[(K.PRICING_PAGE_VISIT, 3 * D), (K.PAGE_VISIT, 4 * D)])
    # Anatole's referral, won: only in team views.
    _walk(session, lead("Other Ref", Source.REFERRAL, 15, 7_000, owner=anatole), [(Stage.WON, 5)],
          score_at_close=90)
    # Referral spend, for all time and the whole team.
    session.add(SourceCost(source="referral", cost=Decimal(3000)))
    session.commit()
    return Pipeline(anabel=anabel.id, anatole=anatole.id, leads=L)


def _by_source(rows):
    return {r.source: r for r in rows}


def test_source_roi_for_one_rep_all_time(session, pipeline):
    rows = analytics.source_roi(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))
    ref, web, site = (_by_source(rows)[s] for s in ("referral", "webinar", "website"))

    assert (ref.leads, ref.won, ref.lost) == (4, 2, 1)
    assert ref.conversion == pytest.approx(2 / 3)
    assert ref.conversion_label == "67%"
    assert ref.closed_label == "2 of 3 closed"
    assert ref.won_revenue == 30_000 and ref.won_revenue_label == "$30,000"
    assert ref.average_deal == 15_000
    assert ref.revenue_per_lead == 30_000 / 4
    assert ref.average_days_to_close == pytest.approx((10 + 20) / 2)
    assert ref.average_days_label == "15 days"
    # 5 referral leads in all share the $3,000; Anabel's 4 carry $2,400.
    assert ref.has_cost and ref.cost == pytest.approx(3000 * 4 / 5)
    assert ref.cost_per_won == pytest.approx(2400 / 2)
    assert ref.roi == pytest.approx((30_000 - 2400) / 2400)
    assert ref.roi_label == "+1,150%"

    assert (web.leads, web.won, web.lost, web.won_revenue) == (2, 1, 1, 50_000)
    assert web.conversion_label == "50%"
    assert web.average_days_label == "10 days"
    assert not web.has_cost and web.cost_label == "—" and web.roi_label == "—"
    # Nothing closed yet: no conversion to show, and it ranks last.
    assert (site.leads, site.won, site.lost, site.conversion_label) == (1, 0, 0, "—")
    assert site.average_deal_label == "—"
    assert [r.source for r in rows] == ["referral", "webinar", "website"]


def test_source_roi_average_score_is_the_mean_of_current_scores(session, pipeline):
    rows = _by_source(analytics.source_roi(session, flt=AnalyticsFilter(owner_id=pipeline.anabel)))
    referrals = [pipeline.leads[n] for n in ("Ref One", "Ref Two", "Ref Three", "Ref Four")]
    for lead in referrals:
        session.refresh(lead)
    assert rows["referral"].average_score == pytest.approx(sum(x.score for x in referrals) / 4)


def test_team_view_includes_every_rep_and_pays_the_whole_cost(session, pipeline):
    ref = _by_source(analytics.source_roi(session, flt=AnalyticsFilter()))["referral"]
    assert (ref.leads, ref.won, ref.lost) == (5, 3, 1)
    assert ref.conversion_label == "75%"
    assert ref.won_revenue == 37_000
    assert ref.cost == 3000 and ref.cost_per_won == 1000
    assert ref.roi == pytest.approx((37_000 - 3000) / 3000)


def test_other_rep_sees_only_their_own_leads(session, pipeline):
    rows = analytics.source_roi(session, flt=AnalyticsFilter(owner_id=pipeline.anatole))
    assert [(r.source, r.leads, r.won, r.conversion_label) for r in rows] == [("referral", 1, 1, "100%")]


def test_date_range_keeps_only_leads_created_in_it(session, pipeline):
    flt = period_filter("90d", now=NOW, owner_id=pipeline.anabel)
    rows = _by_source(analytics.source_roi(session, flt=flt))
    # "Web Two" was created 200 days ago: only the lost webinar lead is left.
    assert (rows["webinar"].leads, rows["webinar"].won, rows["webinar"].lost) == (1, 0, 1)
    assert rows["webinar"].conversion_label == "0%"
    assert rows["referral"].leads == 4
    # 30 days: "Ref One" (60) and "Ref Two" (40) are out; "Ref Three" was created exactly 30 days ago.
    rows = _by_source(analytics.source_roi(session, flt=period_filter("30d", now=NOW, owner_id=pipeline.anabel)))
    assert (rows["referral"].leads, rows["referral"].won, rows["referral"].lost) == (2, 0, 1)
    # Their share of the spend, nothing won back: ROI -100%, no cost per won deal.
    assert rows["referral"].cost == pytest.approx(3000 * 2 / 5)
    assert rows["referral"].roi_label == "−100%" and rows["referral"].cost_per_won_label == "—"
    # A range with no leads at all.
    empty = AnalyticsFilter(created_from=NOW - 1000 * D, created_to=NOW - 900 * D)
    assert analytics.source_roi(session, flt=empty) == []


def test_tier_counts_are_open_leads_by_current_tier(session, pipeline):
    counts = {t.tier: t for t in analytics.tier_counts(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))}
    # Open leads: "Ref Four" (pricing + demo today, big company) and "Site One" (pricing page, a visit).
    assert pipeline.leads["Ref Four"].tier == "hot" and pipeline.leads["Site One"].tier == "warm"
    assert {k: v.count for k, v in counts.items()} == {"hot": 1, "warm": 1, "cold": 0}
    assert counts["hot"].share_label == "50% of open leads"
    none = analytics.tier_counts(session, flt=AnalyticsFilter(owner_id=pipeline.anatole))
    assert [t.count for t in none] == [0, 0, 0] and none[0].share_label == "No open leads"


def test_weekly_tiers_group_leads_by_the_monday_of_their_creation_week(session, pipeline):
    weeks = analytics.weekly_tiers(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))
    expected: dict[str, list[int]] = {}
    for lead in pipeline.leads.values():
        if lead.owner_id != pipeline.anabel:
            continue
        session.refresh(lead)
        day = lead.created_at.astimezone(NOW.tzinfo).date()
        monday = (day - timedelta(days=day.weekday())).isoformat()
        slot = expected.setdefault(monday, [0, 0, 0])
        slot[["hot", "warm", "cold"].index(lead.tier)] += 1
    assert {w.week_start: [w.hot, w.warm, w.cold] for w in weeks} == expected
    assert [w.week_start for w in weeks] == sorted(expected)
    assert all(date.fromisoformat(w.week_start).weekday() == 0 for w in weeks)
    assert sum(w.hot + w.warm + w.cold for w in weeks) == 7


def test_tier_conversion_uses_the_score_at_close(session, pipeline):
    rows = {r.tier: r for r in analytics.tier_conversion(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))}
    # At close: Hot 85 won, 75 lost, 80 won; Warm 55 won; Cold 20 lost.
    assert (rows["hot"].won, rows["hot"].lost, rows["hot"].conversion_label) == (2, 1, "67%")
    assert (rows["warm"].won, rows["warm"].lost, rows["warm"].conversion_label) == (1, 0, "100%")
    assert (rows["cold"].won, rows["cold"].lost, rows["cold"].conversion_label) == (0, 1, "0%")
    team = {r.tier: r for r in analytics.tier_conversion(session, flt=AnalyticsFilter())}
    assert (team["hot"].won, team["hot"].lost) == (3, 1)  # plus Anatole's 90 won


def test_tier_conversion_thresholds_match_the_rubric(session, pipeline):
    # 70 is Hot, 69 Warm, 40 Warm, 39 Cold: move the closed leads' scores onto the edges.
    for name, score in (("Ref One", 70), ("Ref Two", 69), ("Ref Three", 40), ("Web One", 39), ("Web Two", 39)):
        lead = pipeline.leads[name]
        lead.score_at_close = score
        session.add(lead)
    session.commit()
    rows = {r.tier: (r.won, r.lost) for r in analytics.tier_conversion(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))}
    assert rows == {"hot": (1, 0), "warm": (1, 1), "cold": (1, 1)}


def test_funnel_counts_each_stage_reached_and_conversion_to_the_next(session, pipeline):
    rows = analytics.funnel(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))
    assert [r.stage for r in rows] == ["new", "contacted", "qualified", "meeting", "proposal", "negotiation", "won"]
    # 7 leads; contacted: Ref One/Two/Three, Web One, and Web Two (won straight from new, so it
    # passed every stage); beyond that only the three won deals.
    assert [r.reached for r in rows] == [7, 5, 3, 3, 3, 3, 3]
    assert rows[0].next_conversion == pytest.approx(5 / 7) and rows[0].next_conversion_label == "71%"
    assert rows[1].next_conversion == pytest.approx(3 / 5) and rows[1].next_conversion_label == "60%"
    assert rows[2].next_conversion_label == "100%"
    assert not rows[-1].has_next and rows[-1].next_conversion_label == "—"
    assert rows[-1].reached_share_label == "43%"  # 3 of 7 won


def test_funnel_average_time_in_stage_counts_completed_stays(session, pipeline):
    rows = {r.stage: r for r in analytics.funnel(session, flt=AnalyticsFilter(owner_id=pipeline.anabel))}
    # new: Ref One 2, Ref Two 1, Ref Three 2, Web One 2 (its recorded arrival not counted twice),
    # Web Two 10; Ref Four and Site One are still new.
    assert rows["new"].stays == 5
    assert rows["new"].average_days == pytest.approx((2 + 1 + 2 + 2 + 10) / 5)
    assert rows["new"].average_days_label == "3.4 days"
    # contacted: Ref One 3, Ref Two 19, Ref Three 3, Web One 3.
    assert rows["contacted"].average_days == pytest.approx((3 + 19 + 3 + 3) / 4)
    assert rows["qualified"].stays == 1 and rows["qualified"].average_days == pytest.approx(5)
    assert rows["meeting"].stays == 0 and rows["meeting"].average_days_label == "—"
    assert rows["won"].average_days_label == "—"


def test_funnel_follows_the_filters(session, pipeline):
    rows = analytics.funnel(session, flt=period_filter("90d", now=NOW, owner_id=pipeline.anabel))
    # Without Web Two: 6 leads, 4 contacted, 2 won; new stays 2, 1, 2, 2.
    assert [r.reached for r in rows] == [6, 4, 2, 2, 2, 2, 2]
    assert rows[0].average_days == pytest.approx((2 + 1 + 2 + 2) / 4)
    team = analytics.funnel(session, flt=AnalyticsFilter())
    assert [r.reached for r in team] == [8, 6, 4, 4, 4, 4, 4]


def test_report_on_an_empty_range_has_empty_sections(session, pipeline):
    report = analytics.analytics_report(
        session, flt=AnalyticsFilter(created_from=NOW - 1000 * D, created_to=NOW - 900 * D)
    )
    assert report.total_leads == 0 and report.sources == [] and report.weekly == []
    assert [r.reached for r in report.funnel] == [0] * 7
    assert all(r.reached_share_label == "—" for r in report.funnel)
    assert [t.count for t in report.tiers] == [0, 0, 0]


def test_period_filter_rejects_unknown_periods():
    with pytest.raises(ValueError):
        period_filter("7y", now=NOW)
    assert period_filter("all", now=NOW, owner_id=3) == AnalyticsFilter(owner_id=3)


def test_no_roi_before_anything_has_closed(session, pipeline):
    session.add(SourceCost(source="website", cost=Decimal(500)))
    session.commit()
    site = _by_source(analytics.source_roi(session, flt=AnalyticsFilter(owner_id=pipeline.anabel)))["website"]
    assert site.has_cost and site.cost_label == "$500"
    assert site.roi_label == "—" and site.cost_per_won_label == "—"


def test_the_concurrent_report_equals_the_sequential_one(session, pipeline):
    """The page's side-by-side path must show exactly what one query after another gives."""
    from crm_app.services.analytics import analytics_report, analytics_report_concurrently

    # Sessions on the test's own connection see its uncommitted rows; one worker keeps them in turn.
    def on_this_connection() -> Session:
        return Session(bind=session.connection())

    for owner_id in (pipeline.anabel, None):
        flt = period_filter("all", now=NOW, owner_id=owner_id)
        report = analytics_report_concurrently(on_this_connection, flt=flt, workers=1)
        assert report.total_leads > 0 and report.funnel
        assert report == analytics_report(session, flt=flt)


def _import(session, tmp_path, name: str, text_: str, **mapping):
    from crm_app.services.importing import ImportMapping, guess_mapping, import_file, profile_file

    path = tmp_path / name
    path.write_text(text_)
    profile = profile_file(path)
    columns = guess_mapping(profile.fmt.headers, profile)
    return import_file(session, path, ImportMapping(columns=columns, **mapping), now=NOW)


def test_source_roi_shows_each_word_an_import_kept_instead_of_lumping_them(session, pipeline, tmp_path):
    _import(session, tmp_path, "old-crm.csv",
            "Email,Lead Source,Converted,Created\n"
            "g1@example.com,Google,1,2026-01-05\ng2@example.com,google,0,2026-01-05\n"
            "o1@example.com,Olark Chat,0,2026-01-06\nd1@example.com,Direct Traffic,1,2026-01-07\n"
            "w1@example.com,Website,0,2026-01-08\n",
            defaults={"source": "website"})
    rows = analytics.source_roi(session, flt=AnalyticsFilter())
    website = {(r.label, r.detail_of): (r.leads, r.won, r.lost) for r in rows if r.source == "website"}
    assert website == {
        ("Website", ""): (2, 0, 1),  # Site One (open) and the file's own "Website"
        ("Google", "Website"): (2, 1, 1),
        ("Olark Chat", "Website"): (1, 0, 1),
        ("Direct Traffic", "Website"): (1, 1, 0),
    }


def test_leads_imported_without_dates_stay_out_of_what_needs_dates(session, pipeline, tmp_path):
    before_funnel = [r.reached for r in analytics.funnel(session, flt=AnalyticsFilter())]
    before_weeks = analytics.weekly_tiers(session, flt=AnalyticsFilter())
    before_month = analytics.funnel(session, flt=period_filter("30d", now=NOW))[0].reached
    _import(session, tmp_path, "undated.csv",
            "Prospect ID,Converted\n" + "".join(f"P-{i},{i % 2}\n" for i in range(1, 41)),
            defaults={"source": "website"}, row_order="newest_first")
    # Forty won or lost deals of unknown date: they did not all arrive this week, nor pass every stage.
    assert [r.reached for r in analytics.funnel(session, flt=AnalyticsFilter())] == before_funnel
    assert analytics.weekly_tiers(session, flt=AnalyticsFilter()) == before_weeks
    assert analytics.funnel(session, flt=period_filter("30d", now=NOW))[0].reached == before_month
    # The page says where they went.
    assert analytics.undated_leads(session, flt=period_filter("30d", now=NOW)) == 40
    assert analytics.undated_leads(session, flt=AnalyticsFilter()) == 0
    # They still count where no date is needed: leads and wins per source.
    rows = analytics.source_roi(session, flt=AnalyticsFilter())
    website = sum(r.leads for r in rows if r.source == "website")
    assert website == 41
