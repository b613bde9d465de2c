"""Next best action and segment insights in a real browser: the lead page and the queue show the
suggested play with how sure it is and why; analytics lists the strongest segments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.db.models import Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Play, Source, Stage
from crm_app.services.next_action import refresh_play_stats
from tests.e2e.conftest import APP_NOW, choose_viewer, sign_in_as
from tests.factories import make_lead, make_past_stay, make_user

pytestmark = pytest.mark.e2e

WHY = ("70% of 60 similar leads from LinkedIn at companies of 51-200 employees in Contacted moved forward "
       "within 45 days after a case study vs 30% of 180 without")


@pytest.fixture(scope="module")
def nba_team(app_session):
    """Nia's history (case studies moved LinkedIn leads on), her closed deals (LinkedIn 30 of 40 won,
    website 8 of 40) and one Hot LinkedIn lead now. Removed afterwards: other modules count leads."""
    nia = make_user(app_session, "Nia Nextstep")
    n = 10_000
    for play, moved_count, total in ((Play.CASE_STUDY, 42, 60), (Play.WHITEPAPER, 18, 60), (None, 36, 120)):
        for i in range(total):
            n += 1
            make_past_stay(app_session, nia, n, now=APP_NOW, moved=i < moved_count, play=play)
    for source, won, lost in ((Source.LINKEDIN, 30, 10), (Source.WEBSITE, 8, 32)):
        for i in range(won + lost):
            n += 1
            app_session.add(Lead(name=f"Closed {n}", email=f"closed{n}@example.com", company_size=10,
                                 source=source.value, stage=(Stage.WON if i < won else Stage.LOST).value,
                                 tier="cold", owner_id=nia.id, created_at=APP_NOW - timedelta(days=20),
                                 closed_at=APP_NOW - timedelta(days=3)))
    app_session.commit()
    hot = make_lead(app_session, "Nora Nextstep", now=APP_NOW, owner=nia, source=Source.LINKEDIN,
                    company_size=120, stage=Stage.CONTACTED, created_ago=timedelta(days=2),
                    activities=[(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(hours=2)),
                                (K.PRICING_PAGE_VISIT, timedelta(hours=3))])
    refresh_play_stats(app_session, APP_NOW)
    yield {"nia": nia, "hot": hot}
    app_session.execute(text("DELETE FROM leads WHERE owner_id = :id"), {"id": nia.id})
    app_session.execute(text("DELETE FROM play_stats"))
    app_session.commit()


def test_lead_page_shows_the_next_best_action_with_confidence_and_why(page, nba_team):
    sign_in_as(page, "Nia Nextstep", f"/leads/{nba_team['hot'].id}")
    card = page.locator(".next-action")
    expect(card.locator(".next-action-play")).to_have_text("Case study")
    expect(card.locator(".next-action-confidence")).to_have_text("Medium confidence")
    expect(card.locator(".next-action-why")).to_have_text(WHY)


def test_the_queue_suggests_the_next_best_action(page, nba_team):
    page.goto("/")
    choose_viewer(page, "Nia Nextstep")
    item = page.locator(".queue-item", has_text="Nora Nextstep")
    expect(item.locator(".queue-suggestion")).to_have_text("Suggested: Case study · Medium confidence")


def test_analytics_lists_the_strongest_segment_with_support_lift_and_interval(page, nba_team):
    page.goto("/analytics")
    choose_viewer(page, "Nia Nextstep")
    rows = page.locator(".segments .segment-row")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".segment-sentence")).to_have_text("Leads from LinkedIn convert 1.6x the average")
    expect(rows.first).to_contain_text("30 won of 40 closed")
    expect(rows.first.locator(".segment-interval")).to_have_text("60–86%")
    expect(page.locator(".segments")).to_contain_text("48% of 80 closed leads won")


def test_logging_the_suggested_play_shows_it_and_moves_on_to_the_next_step(page, nba_team):
    sign_in_as(page, "Nia Nextstep", f"/leads/{nba_team['hot'].id}")
    expect(page.locator(".next-action .next-action-play")).to_have_text("Case study")
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Email sent").click()
    page.get_by_role("combobox", name="Play").click()
    page.get_by_role("option", name="Case study").click()
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".timeline-entry").first).to_contain_text("Email sent · Case study")
    # The case study is done in this stage; nothing else clearly helped: the tier rule for a Hot lead.
    expect(page.locator(".next-action .next-action-play")).to_have_text("Pricing call")
    expect(page.locator(".next-action .next-action-confidence")).to_have_text("Rule of thumb")


def test_a_play_that_does_not_fit_the_activity_is_explained_in_the_form(page, nba_team):
    sign_in_as(page, "Nia Nextstep", f"/leads/{nba_team['hot'].id}")
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Email sent").click()
    page.get_by_role("combobox", name="Play").click()
    page.get_by_role("option", name="Pricing call").click()
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".activity-error")).to_have_text(
        "A pricing call is logged as a call or meeting: pick that as the activity type.")
