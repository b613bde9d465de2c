"""The frame around the pages in a real browser: no false empty state while a page loads, a layout that
works at phone width, every kanban column reachable, and the static files a fresh page load asks for."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import delete

from crm_app.db.models import Lead, Notification, User
from crm_app.domain import Stage
from tests.e2e.conftest import APP_NOW, ARTIFACTS, DEFAULT_VIEWER, choose_viewer, sign_in_cookie
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
EMPTY_TEXTS = ["Nothing urgent. Nice work.", "No leads match these filters."]

# Installed before any of the page's scripts: records whether an empty-state text was ever in the page,
# and whether the loading placeholders were (so the check proves it watched the page load).
WATCH_EMPTY_TEXTS = """
(() => {
  const texts = %s;
  window.__seen = {empty: [], placeholder: false};
  const check = () => {
    const body = document.body;
    if (!body) return;
    const text = body.innerText || '';
    for (const t of texts) if (text.includes(t) && !window.__seen.empty.includes(t)) window.__seen.empty.push(t);
    if (document.querySelector('.page-loading')) window.__seen.placeholder = true;
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true, characterData: true});
})();
""" % EMPTY_TEXTS


@pytest.fixture
def phone(browser, app_url, app_session, seeded_app_data, request):
    """A phone-sized tab (390 x 844) signed in as the default rep."""
    context = browser.new_context(viewport=PHONE, base_url=app_url, has_touch=True, is_mobile=True)
    context.add_cookies([sign_in_cookie(app_session, app_url, DEFAULT_VIEWER)])
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def no_sideways_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


# --- No false empty states -------------------------------------------------------------------------

def test_today_and_leads_never_show_an_empty_state_before_their_data_arrives(page, seeded_app_data):
    """Ria has leads (and a fresh pricing request): neither "Nothing urgent" nor "No leads match" may
    flash while the page's state is on its way; placeholders show instead."""
    page.add_init_script(WATCH_EMPTY_TEXTS)
    page.goto("/")
    expect(page.locator(".queue-item").first).to_be_visible()
    seen = page.evaluate("window.__seen")
    assert seen == {"empty": [], "placeholder": True}

    page.goto("/leads")
    expect(page.locator(".lead-row").first).to_be_visible()
    seen = page.evaluate("window.__seen")
    assert seen == {"empty": [], "placeholder": True}

    # The empty state itself still works once the state says so.
    page.locator("input[placeholder^='Search name']").fill("zz-nobody-has-this-name")
    expect(page.get_by_text("No leads match these filters.")).to_be_visible()


def test_the_sidebar_keeps_its_links_and_name_while_the_next_page_loads(page, seeded_app_data):
    """A manager's sidebar (role links, name) stays put while a link's page loads its state."""
    page.goto("/")
    choose_viewer(page, "Maya Manager")
    expect(page.locator(".signed-in-name")).to_have_text("Maya Manager")
    expect(page.locator(".app-sidebar a[href='/import']")).to_be_visible()
    page.evaluate("""() => {
      window.__lost = [];
      const check = () => {
        if (!document.querySelector('.app-sidebar .signed-in-name')) window.__lost.push('name');
        if (!document.querySelector(".app-sidebar a[href='/import']")) window.__lost.push('import');
      };
      new MutationObserver(check).observe(document.body, {childList: true, subtree: true});
    }""")
    page.locator(".app-sidebar a[href='/leads']").click()
    expect(page.locator(".lead-row, .empty-state").first).to_be_visible()  # (Maya owns no leads herself)
    page.locator(".app-sidebar a[href='/pipeline']").click()
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    assert page.evaluate("window.__lost") == []


# --- Phone width ---------------------------------------------------------------------------------

def test_today_on_a_phone_fits_the_screen_and_the_menu_opens_the_other_pages(phone):
    phone.goto("/")
    expect(phone.locator(".queue-item").first).to_be_visible()
    expect(phone.locator(".app-sidebar")).to_be_hidden()
    no_sideways_scroll(phone)
    phone.screenshot(path=str(ARTIFACTS / "phone-today.png"), full_page=True)

    phone.locator(".phone-menu-button").click()
    menu = phone.locator(".phone-menu")
    expect(menu.locator(".signed-in-name")).to_have_text(DEFAULT_VIEWER)
    menu.get_by_role("link", name="Leads").click()
    phone.wait_for_url(re.compile(r"/leads$"))
    expect(phone.locator(".lead-row").first).to_be_visible()


def test_the_phone_top_bar_has_the_bell_and_its_panel_fits_the_screen(phone, app_session, seeded_app_data):
    """A rep on a phone hears about a pricing request too: the top bar carries the bell with its
    count, and its panel opens inside the screen, listing the notification."""
    rep, lead = seeded_app_data["users"][DEFAULT_VIEWER], seeded_app_data["leads"]["Ada Lovelace"]
    note = Notification(user_id=rep.id, lead_id=lead.id, kind="pricing_request",
                        message=f"{lead.name} asked for pricing (phone bell test)")
    app_session.add(note)
    app_session.commit()
    try:
        phone.goto("/")
        bell = phone.locator(".phone-bell")
        expect(bell).to_be_visible()
        expect(bell).to_have_attribute("data-loaded", "1")
        expect(phone.locator(".phone-bell-count")).to_be_visible()
        assert int(bell.get_attribute("data-unread")) >= 1
        phone.locator(".phone-bell-button").click()
        panel = phone.locator(".phone-bell-panel")
        expect(panel.locator(".notification", has_text="(phone bell test)")).to_be_visible()
        box = panel.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        no_sideways_scroll(phone)
        phone.screenshot(path=str(ARTIFACTS / "phone-bell.png"))
    finally:
        app_session.execute(delete(Notification).where(Notification.id == note.id))
        app_session.commit()


def test_leads_on_a_phone_are_cards_not_a_wide_table(phone):
    phone.goto("/leads")
    row = phone.locator(".lead-row").first
    expect(row).to_be_visible()
    no_sideways_scroll(phone)
    expect(phone.locator(".leads-table thead")).to_be_hidden()
    box = row.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # The name, the score and the value are all on the card, inside the screen.
    for part in (".lead-name", ".lead-value"):
        inner = row.locator(part).bounding_box()
        assert inner and 0 <= inner["x"] and inner["x"] + inner["width"] <= PHONE["width"], part
    phone.screenshot(path=str(ARTIFACTS / "phone-leads.png"), full_page=True)


def test_the_lead_page_on_a_phone_fits_the_screen(phone, seeded_app_data):
    ada = seeded_app_data["leads"]["Ada Lovelace"]
    phone.goto(f"/leads/{ada.id}")
    expect(phone.locator(".reason-row").first).to_be_visible()
    no_sideways_scroll(phone)
    phone.screenshot(path=str(ARTIFACTS / "phone-lead.png"), full_page=True)


def test_the_pipeline_on_a_phone_shows_one_stage_at_a_time(phone, seeded_app_data):
    ada, grace = seeded_app_data["leads"]["Ada Lovelace"], seeded_app_data["leads"]["Grace Hopper"]
    phone.goto("/pipeline")
    expect(phone.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    no_sideways_scroll(phone)
    visible = phone.locator(".pipeline-column:visible")
    expect(visible).to_have_count(1)
    expect(visible).to_have_attribute("data-stage", "new")
    expect(phone.locator(f'[data-card-id="{ada.id}"]')).to_be_visible()

    phone.locator(".phone-stage-trigger").click()
    phone.get_by_role("option", name=re.compile(r"^Contacted")).click()
    expect(visible).to_have_count(1)
    expect(visible).to_have_attribute("data-stage", "contacted")
    expect(phone.locator(f'[data-card-id="{grace.id}"]')).to_be_visible()
    expect(phone.locator(f'[data-card-id="{ada.id}"]')).to_be_hidden()
    no_sideways_scroll(phone)
    phone.screenshot(path=str(ARTIFACTS / "phone-pipeline.png"), full_page=True)


# --- Every kanban column reachable ---------------------------------------------------------------

@pytest.fixture
def strip_deal(app_session):
    rep = make_user(app_session, "Strip Rep")
    deal = make_lead(app_session, "Strip Deal", now=APP_NOW, owner=rep, deal_value=6_000)
    yield rep, deal
    app_session.rollback()
    app_session.execute(delete(Lead).where(Lead.owner_id == rep.id))
    app_session.execute(delete(User).where(User.id == rep.id))
    app_session.commit()


def test_a_deal_dropped_on_the_last_stage_lands_there(page, strip_deal, app_session):
    """The Lost column is off screen at 1440 px; its chip on the stage strip takes the drop."""
    rep, deal = strip_deal
    page.goto("/pipeline")
    choose_viewer(page, rep.name)
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    card = page.locator(f'[data-rfd-draggable-id="{deal.id}"]')
    expect(card).to_be_visible()
    last = page.locator('.pipeline-column[data-stage="lost"]')
    assert last.bounding_box()["x"] > page.viewport_size["width"]  # off screen: needs the strip

    chip = page.locator('.stage-chip[data-stage="lost"]')
    sb, tb = card.bounding_box(), chip.bounding_box()
    x0, y0 = sb["x"] + sb["width"] / 2, sb["y"] + sb["height"] / 2
    x1, y1 = tb["x"] + tb["width"] / 2, tb["y"] + tb["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0, y0 + 10, steps=5)
    page.mouse.move(x1, y1, steps=20)
    page.mouse.move(x1, y1 + 1, steps=2)
    page.mouse.up()
    # Lost asks why first (issue #14, closing deals); the card moves once a reason is given.
    dialog = page.locator('.close-deal-dialog[data-stage="lost"]')
    expect(dialog).to_contain_text(deal.name)
    dialog.get_by_role("combobox", name="Lost reason").click()
    page.get_by_role("option", name="Chose a competitor").click()
    dialog.locator(".confirm-close").click()
    expect(dialog).to_have_count(0)

    lost = page.locator('[data-rfd-droppable-id="lost"]')
    expect(lost.locator(f'[data-card-id="{deal.id}"]')).to_have_count(1)
    app_session.expire_all()
    assert app_session.get(Lead, deal.id).stage == Stage.LOST.value

    # A click on the chip brings the column into view.
    chip.click()
    page.wait_for_function(
        "() => { const r = document.getElementById('column-lost').getBoundingClientRect();"
        " return r.right <= window.innerWidth && r.left >= 0; }")


# --- Static files ----------------------------------------------------------------------------------

def test_a_fresh_page_load_finds_the_favicon_and_every_static_file(browser, app_url):
    context = browser.new_context(base_url=app_url)
    page = context.new_page()
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto("/sign-in")
    page.locator(".sign-in-ready").wait_for(state="attached")
    icon = page.request.get("/favicon.ico")
    status, head = icon.status, icon.body()[:4]
    context.close()
    assert status == 200 and head == b"\x00\x00\x01\x00"  # an ICO file
    assert missing == []


# --- Forms report every bad field at once -------------------------------------------------------------

def test_the_quick_add_form_shows_every_bad_field_at_once_and_keeps_to_the_columns_limits(page, app_session):
    page.goto("/leads")
    expect(page.locator(".lead-row").first).to_be_visible()
    page.locator("#quick-add-lead").click()
    form = page.locator(".quick-add-form")
    expect(form).to_be_visible()
    # The inputs stop where the leads table's columns do.
    assert form.locator("#field-name").get_attribute("maxlength") == str(Lead.__table__.c["name"].type.length)
    assert form.locator("#field-email").get_attribute("maxlength") == str(Lead.__table__.c["email"].type.length)
    form.locator("#field-email").fill("not-an-email")
    form.locator("#field-deal_value").fill("lots")
    form.locator(".quick-add-save").click()
    expect(form.locator(".error-name")).to_have_text("Name is required.")
    expect(form.locator(".error-email")).to_contain_text("not an email address")
    expect(form.locator(".error-deal_value")).to_contain_text("Deal value must be an amount")
    # Fixing one leaves the others' messages where they are.
    form.locator("#field-name").fill("Form Check Lead")
    expect(form.locator(".error-name")).to_have_count(0)
    expect(form.locator(".error-email")).to_be_visible()
    app_session.expire_all()
    assert app_session.query(Lead).filter(Lead.name == "Form Check Lead").count() == 0
