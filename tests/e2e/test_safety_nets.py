"""Safety nets and speed in a real browser: Undo on a move's toast, a confirmation that states the impact,
search everywhere (Ctrl-K), the leads list's address holding its filters, a dropped card kept in view."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, text, update

from crm_app.db.models import Lead, StageChange
from crm_app.domain import Source, Stage
from tests.e2e.conftest import APP_NOW, choose_viewer
from tests.e2e.test_pipeline import card, column, drag_card_to_column

pytestmark = pytest.mark.e2e

REP = "Undine Undo"
OTHER_REP = "Otto Otherrep"
MANAGER = "Magnus Confirm"


@pytest.fixture(scope="module")
def nets(app_session):
    """Two reps and a manager of our own, with leads only these tests touch; all removed afterwards."""
    from tests.factories import make_lead, make_user

    rep, other = make_user(app_session, REP), make_user(app_session, OTHER_REP)
    manager = make_user(app_session, MANAGER, role="manager")

    def lead(name, owner=rep, stage=Stage.NEW, score=None, **kw):
        made = make_lead(app_session, name, now=APP_NOW, owner=owner, stage=stage, company=f"{name} Ltd", **kw)
        if score is not None:  # a fixed rank on the board (the tier follows the score, as the database asks)
            tier = "hot" if score >= 70 else "warm" if score >= 40 else "cold"
            app_session.execute(update(Lead).where(Lead.id == made.id).values(score=score, tier=tier))
            app_session.commit()
        app_session.refresh(made)
        return made

    leads = {
        "undo": lead("Netlead Undo", deal_value=9_000),
        "low": lead("Netlead Lowrank", score=1, deal_value=500),
        "ranked": [lead(f"Netlead Top {i:02}", stage=Stage.CONTACTED, score=95, deal_value=1_000) for i in range(27)],
        "mine_by_email": lead("Netlead Findme", email="findme.nets@safety-example.org"),
        "others": lead("Netlead Hidden", owner=other, email="hidden.nets@safety-example.org"),
        "referral": lead("Netlead Referral", source=Source.REFERRAL, deal_value=70_000),
        "webinar": lead("Netlead Webinar", source=Source.WEBINAR, deal_value=1_000),
    }
    yield {"rep": rep, "other": other, "manager": manager, "leads": leads}
    ids = [lead.id for value in leads.values() for lead in (value if isinstance(value, list) else [value])]
    app_session.rollback()
    app_session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": ids})
    app_session.execute(text("DELETE FROM users WHERE id = ANY(:ids)"), {"ids": [rep.id, other.id, manager.id]})
    app_session.commit()


def _stage_changes(app_session, lead) -> list[tuple[str | None, str]]:
    app_session.expire_all()
    rows = app_session.execute(select(StageChange.from_stage, StageChange.to_stage)
                               .where(StageChange.lead_id == lead.id).order_by(StageChange.id))
    return [tuple(r) for r in rows]


def _open_board(page, shown_lead) -> None:
    page.goto("/pipeline")
    choose_viewer(page, REP)
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    expect(card(page, shown_lead)).to_be_visible()


def test_undo_on_the_toast_moves_the_deal_back_and_the_history_shows_both_moves(page, nets, app_session):
    lead = nets["leads"]["undo"]
    _open_board(page, lead)
    drag_card_to_column(page, lead.id, "qualified")
    expect(column(page, "qualified").locator(f'[data-card-id="{lead.id}"]')).to_have_count(1)
    toast = page.locator(".undo-toast").filter(has_text="Netlead Undo moved to Qualified")
    expect(toast).to_be_visible()
    toast.get_by_role("button", name="Undo").click()

    expect(page.get_by_text("Undone: Netlead Undo is back in New")).to_be_visible()
    expect(column(page, "new").locator(f'[data-card-id="{lead.id}"]')).to_have_count(1)
    expect(column(page, "qualified").locator(f'[data-card-id="{lead.id}"]')).to_have_count(0)
    app_session.expire_all()
    assert app_session.get(Lead, lead.id).stage == "new"
    # The undo is a move of its own: both moves are history, nothing was erased.
    assert _stage_changes(app_session, lead)[-2:] == [("new", "qualified"), ("qualified", "new")]
    page.goto(f"/leads/{lead.id}")
    timeline = page.locator(".timeline-entry")
    expect(timeline.filter(has_text="Moved from New to Qualified")).to_have_count(1)
    expect(timeline.filter(has_text="Moved from Qualified to New")).to_have_count(1)


def test_a_card_dropped_below_the_loaded_cards_stays_visible_and_highlighted(page, nets, app_session):
    low, ranked = nets["leads"]["low"], nets["leads"]["ranked"]
    _open_board(page, low)
    contacted = column(page, "contacted")
    # 27 better deals in Contacted: the column loads 25, so a weak deal would rank below all of them.
    expect(page.locator('.pipeline-column[data-stage="contacted"] .column-count')).to_have_text("27")
    expect(contacted.locator("[data-card-id]")).to_have_count(25)
    # Dropped at the top of the column (its bottom is far below the fold): the server puts it where it
    # ranks, last, and keeps it there, outlined and scrolled into view.
    drag_card_to_column(page, low.id, "contacted", position="start")

    moved = contacted.locator(f'[data-card-id="{low.id}"]')
    expect(moved).to_have_count(1)
    expect(moved).to_have_attribute("data-highlighted", "true")
    expect(moved).to_be_in_viewport()
    expect(page.locator('.pipeline-column[data-stage="contacted"] .column-count')).to_have_text("28")
    expect(moved).to_have_attribute("data-saving", "false")  # shown at once, then saved
    expect(moved).to_have_attribute("data-highlighted", "true")
    app_session.expire_all()
    stored = app_session.get(Lead, low.id)
    assert stored.stage == "contacted"
    # It really ranks below every loaded card (so it was added, not merely loaded).
    assert stored.score < min(lead.score for lead in ranked)


def test_the_engine_switch_confirmation_states_the_impact_and_cancel_changes_nothing(page, nets, app_session):
    page.goto("/model")
    choose_viewer(page, MANAGER)
    expect(page.locator(".effective-engine")).to_have_text("Rules")
    page.get_by_role("radio", name="Model").click()

    dialog = page.locator(".switch-confirm")
    app_session.expire_all()
    open_leads, hot = app_session.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE tier = 'hot') FROM leads WHERE stage NOT IN ('won', 'lost')")).one()
    expect(dialog.locator(".confirm-impact")).to_have_text(f"Re-ranks {open_leads:,} open leads; Hot {hot:,} now.")
    expect(dialog.locator(".confirm-detail")).to_contain_text("every rep's queue, board and lists change order")
    switches = app_session.execute(text("SELECT count(*) FROM audit_log WHERE action = 'engine_switched'")).scalar()
    dialog.locator(".confirm-cancel").click()
    expect(dialog).to_have_count(0)
    expect(page.locator(".effective-engine")).to_have_text("Rules")
    expect(page.get_by_role("radio", name="Rules")).to_have_attribute("data-state", "on")
    app_session.expire_all()
    assert app_session.execute(text("SELECT count(*) FROM audit_log WHERE action = 'engine_switched'")
                               ).scalar() == switches


def _search(page, typed: str) -> None:
    expect(page.locator("body[data-shortcuts=ready]")).to_have_count(1)
    page.locator("body").press("Control+k")
    box = page.locator("#global-search-input")
    expect(box).to_be_focused()
    box.fill(typed)
    expect(page.locator(f'.global-search[data-searched="{typed}"]')).to_have_count(1)


def test_ctrl_k_finds_a_lead_by_email_and_opens_it(page, nets):
    mine = nets["leads"]["mine_by_email"]
    page.goto("/")
    choose_viewer(page, REP)
    _search(page, "findme.nets@safety")
    hit = page.locator(f'.search-hit[data-lead-id="{mine.id}"]')
    expect(hit).to_contain_text("findme.nets@safety-example.org")
    expect(hit).to_have_attribute("data-matched", "email")
    page.locator("#global-search-input").press("Enter")
    page.wait_for_url(re.compile(rf"/leads/{mine.id}$"))
    expect(page.get_by_role("heading", name="Netlead Findme")).to_be_visible()


def test_ctrl_k_never_shows_a_rep_another_reps_lead(page, nets):
    mine, others = nets["leads"]["mine_by_email"], nets["leads"]["others"]
    page.goto("/leads")
    choose_viewer(page, REP)
    _search(page, "nets@safety-example")
    expect(page.locator(f'.search-hit[data-lead-id="{mine.id}"]')).to_have_count(1)
    expect(page.locator(".search-hit")).to_have_count(1)
    expect(page.locator(f'.search-hit[data-lead-id="{others.id}"]')).to_have_count(0)
    # Asked for by name, the other rep's lead is simply not there.
    page.locator("#global-search-input").fill("Netlead Hidden")
    expect(page.locator(".search-hint")).to_have_text(
        "Nothing found for \u201cNetlead Hidden\u201d among the leads you can see.")


def test_slash_focuses_the_page_search_and_question_mark_lists_the_shortcuts(page, nets):
    page.goto("/leads")
    choose_viewer(page, REP)
    expect(page.locator("body[data-shortcuts=ready]")).to_have_count(1)
    page.locator("body").press("/")
    expect(page.get_by_placeholder("Search name, company or email")).to_be_focused()
    page.evaluate("document.activeElement.blur()")
    page.locator("body").press("?")
    expect(page.locator(".shortcuts-list")).to_contain_text("Search leads, companies and emails everywhere")


def test_the_leads_list_keeps_its_filters_sort_and_search_in_the_address(page, nets):
    page.goto("/leads")
    choose_viewer(page, REP)
    rows = page.locator(".lead-row")
    expect(rows.first).to_be_visible()

    page.get_by_placeholder("Search name, company or email").fill("Netlead")
    page.locator('.sort-header[data-sort="value"]').click()
    expect(page.locator('.sort-header[data-sort="value"]')).to_have_attribute("aria-pressed", "true")
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query) == {"q": ["Netlead"], "sort": ["value"]})
    expect(rows.first).to_contain_text("Netlead Referral")  # $70,000: the highest value first

    page.reload()
    expect(page.get_by_placeholder("Search name, company or email")).to_have_value("Netlead")
    expect(page.locator('.sort-header[data-sort="value"]')).to_have_attribute("aria-pressed", "true")
    expect(rows.first).to_contain_text("Netlead Referral")
    expect(rows.filter(has_text="Findme")).to_have_count(1)

    # A shared address: another filter, opened straight away.
    page.goto("/leads?q=Netlead&source=webinar")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Netlead Webinar")
