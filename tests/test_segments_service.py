"""Segment insights on a hand-checkable set of closed leads."""

from __future__ import annotations

from datetime import timedelta

from crm_app.db.models import Lead
from crm_app.domain import Source, Stage
from crm_app.scoring.segments import SegmentCount, insights, segment_words
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.segments import segment_insights
from tests.conftest import NOW


def _closed(session, source: Source, won: int, lost: int, start: int) -> None:
    for i in range(won + lost):
        session.add(Lead(name=f"{source.value} {i}", email=f"seg{start + i}@example.com", company_size=10,
                         source=source.value, stage=(Stage.WON if i < won else Stage.LOST).value, tier="cold",
                         created_at=NOW - timedelta(days=60), closed_at=NOW - timedelta(days=5)))


def test_lift_and_interval_are_right_and_thin_or_average_segments_are_never_shown(session):
    # Overall 60 of 150 won (40%). LinkedIn: 30 of 40 (75%, lift 1.875). Website 20 of 100: below
    # average. Referral 10 of 10: perfect, but under the minimum of 30 closed leads.
    _closed(session, Source.LINKEDIN, 30, 10, 0)
    _closed(session, Source.WEBSITE, 20, 80, 100)
    _closed(session, Source.REFERRAL, 10, 0, 300)
    session.commit()
    report = segment_insights(session, flt=AnalyticsFilter())
    assert (report.closed, report.won) == (150, 60)
    assert report.average_label == "40% of 150 closed leads won"
    # Every lead is at a 1-50 company: that trait is the average itself; "LinkedIn at 1-50" says
    # nothing LinkedIn alone does not. One segment stands out.
    assert [s.sentence for s in report.insights] == ["Leads from LinkedIn convert 1.9x the average"]
    linkedin = report.insights[0]
    assert linkedin.support == 40 and linkedin.support_label == "30 won of 40 closed"
    assert abs(linkedin.lift - 0.75 / 0.40) < 1e-9
    # Wilson 95% for 30/40, by hand: centre 0.7281, half-width 0.1300.
    assert (round(linkedin.low, 3), round(linkedin.high, 3)) == (0.598, 0.858)
    assert linkedin.interval_label == "60–86%"


def test_the_page_filter_applies_and_no_closed_history_shows_nothing(session):
    _closed(session, Source.LINKEDIN, 30, 10, 0)
    session.commit()
    later = AnalyticsFilter(created_from=NOW - timedelta(days=30), created_to=NOW)
    assert segment_insights(session, flt=later).insights == []
    assert segment_insights(session, flt=later).average_label == "No closed leads yet"


def test_ranked_by_lift_and_phrased_in_words():
    counts = [
        SegmentCount("linkedin", "read:case_study:2", closed=40, won=36),
        SegmentCount(None, "play:pricing_call", closed=200, won=120),
        SegmentCount(None, "engaged:10", closed=29, won=29),  # under the minimum
        SegmentCount("linkedin", None, closed=300, won=84),  # 28%: its interval reaches below 25%
    ]
    found = insights(counts, overall_closed=1000, overall_won=250)
    assert [s.sentence for s in found] == [
        "Leads from LinkedIn who read 2+ case studies convert 3.6x the average",
        "Leads who got a pricing call convert 2.4x the average",
    ]
    assert segment_words(None, "size:51-200") == "Leads at companies of 51-200 employees"
    assert segment_words("events", "field:industry:Retail") == "Leads from Events in Retail"
    assert segment_words(None, "field:plan_tier:Gold") == "Leads with plan tier Gold"


def test_a_significant_but_small_lift_is_not_a_strong_segment():
    # 1,200 of 4,000 (30%) against 25% overall: surely above average, but only 1.2x.
    counts = [SegmentCount("webinar", None, closed=4000, won=1200)]
    assert insights(counts, overall_closed=20000, overall_won=5000) == []
