"""Bad input in the settings, users and import forms, in a real browser (issue #6): every wrong value is
answered in words beside the field where it was typed, nothing stored is lost, and markup or
SQL-looking text is stored character for character and shown as plain text (no element, no dialog)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.db.models import Lead
from crm_app.domain import Source
from tests.e2e.conftest import APP_NOW, sign_in_as
from tests.factories import make_lead

pytestmark = pytest.mark.e2e

IMG = "<img src=x onerror=alert(1)>"
SQL = "Robert'); DROP TABLE users;--"


@pytest.fixture
def dialogs(page) -> list[str]:
    """Every alert/confirm the page opens (none should: an inert value never runs)."""
    opened: list[str] = []

    def dismiss(dialog) -> None:
        opened.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return opened


def _beside(page, field, message) -> None:
    """`message` is shown right under `field` (not in a banner elsewhere on the page)."""
    expect(message).to_be_visible()
    box, said = field.bounding_box(), message.bounding_box()
    assert 0 <= said["y"] - (box["y"] + box["height"]) < 40, (box, said)
    assert said["x"] < box["x"] + box["width"] and box["x"] < said["x"] + said["width"], (box, said)


# --- Settings -------------------------------------------------------------------------------------

def _stored_cost(app_session, source: str):
    return app_session.execute(text("SELECT cost FROM source_costs WHERE source = :s"), {"s": source}).scalar()


def _stored_days(app_session, stage: str):
    return app_session.execute(
        text("SELECT stagnation_days FROM stage_rules WHERE stage = :s"), {"s": stage}).scalar()


@pytest.fixture
def stored_settings(app_session):
    """Webinar costs 2,500 and a proposal may wait 21 days; whatever was there before comes back after."""
    before = _stored_cost(app_session, "webinar"), _stored_days(app_session, "proposal")
    app_session.execute(text("INSERT INTO source_costs (source, cost, updated_at) VALUES ('webinar', 2500, now()) "
                             "ON CONFLICT (source) DO UPDATE SET cost = 2500"))
    app_session.execute(text("INSERT INTO stage_rules (stage, stagnation_days) VALUES ('proposal', 21) "
                             "ON CONFLICT (stage) DO UPDATE SET stagnation_days = 21"))
    app_session.commit()
    yield
    cost, days = before
    if cost is None:
        app_session.execute(text("DELETE FROM source_costs WHERE source = 'webinar'"))
    else:
        app_session.execute(text("UPDATE source_costs SET cost = :c WHERE source = 'webinar'"), {"c": cost})
    if days is None:
        app_session.execute(text("DELETE FROM stage_rules WHERE stage = 'proposal'"))
    else:
        app_session.execute(text("UPDATE stage_rules SET stagnation_days = :d WHERE stage = 'proposal'"), {"d": days})
    app_session.commit()


COST_ATTEMPTS = [
    ("abc", "Enter an amount in dollars, e.g. 12500."),
    ("-5", "A cost cannot be negative."),
    ("1e99", "That is more than $9,999,999,999.99."),
    ("9" * 40, "That is more than $9,999,999,999.99."),  # the field keeps 20 digits: still too much
    ("NaN", "Enter an amount in dollars, e.g. 12500."),
    ("12.345", "Use at most two decimals (cents)."),
    ("0; DROP TABLE source_costs", "Enter an amount in dollars, e.g. 12500."),
]
DAY_ATTEMPTS = [
    ("abc", "Enter a whole number of days."),
    ("-5", "Enter a whole number of days."),
    ("7.5", "Enter a whole number of days."),
    ("1e3", "Enter a whole number of days."),
    ("0", "Choose between 1 and 365 days."),
    ("366", "Choose between 1 and 365 days."),
    ("9" * 40, "Choose between 1 and 365 days."),
    ("<b>9</b>", "Enter a whole number of days."),
]


def test_wrong_settings_are_explained_beside_the_field_and_the_stored_value_stays(
        page, app_session, stored_settings, dialogs):
    sign_in_as(page, "Maya Manager", "/settings")
    cost_row = page.locator(".cost-row[data-key=webinar]")
    days_row = page.locator(".rule-row[data-key=proposal]")
    expect(cost_row.locator("input")).to_have_value("2500")
    expect(days_row.locator("input")).to_have_value("21")

    editors = ((cost_row, COST_ATTEMPTS, 20, lambda: _stored_cost(app_session, "webinar"), Decimal("2500")),
               (days_row, DAY_ATTEMPTS, 6, lambda: _stored_days(app_session, "proposal"), 21))
    for row, attempts, keeps, stored, value in editors:
        field, error = row.locator("input"), row.locator(".setting-error")
        for typed, said in attempts:
            field.fill(typed)
            row.locator(".setting-save").click()
            expect(error).to_have_text(said)
            _beside(page, field, error)
            expect(field).to_have_value(typed[:keeps])  # what was typed stays, to be corrected
            expect(row).not_to_contain_text("Saved")
            app_session.expire_all()
            assert stored() == value, typed
    assert (_stored_cost(app_session, "webinar"), _stored_days(app_session, "proposal")) == (Decimal("2500"), 21)

    # A reload shows what is stored, with no message left over.
    page.reload()
    expect(cost_row.locator("input")).to_have_value("2500")
    expect(days_row.locator("input")).to_have_value("21")
    expect(page.locator(".setting-error")).to_have_count(0)
    # And a right value still saves.
    days_row.locator("input").fill("30")
    days_row.locator(".setting-save").click()
    expect(days_row).to_contain_text("Saved")
    assert _stored_days(app_session, "proposal") == 30
    assert dialogs == []


# --- Users ----------------------------------------------------------------------------------------

def _user_count(app_session) -> int:
    return app_session.execute(text("SELECT count(*) FROM users")).scalar_one()


def _add_user(page, *, name: str, email: str, password: str) -> None:
    page.locator("#field-name").fill(name)
    page.locator("#field-email").fill(email)
    page.locator("#field-password").fill(password)
    page.locator(".add-user").click()


@pytest.fixture
def hostile_users(app_session):
    emails = ("img.user@test.crm", "robert.tables@test.crm")
    yield emails
    app_session.execute(text("DELETE FROM users WHERE email = ANY(:emails)"), {"emails": list(emails)})
    app_session.commit()


USER_ATTEMPTS = [
    # (name, email, password, field the message is under, message)
    ("Nina New", "nina-at-test", "long enough pw", "email", "That is not an email address (like name@company.com)."),
    ("Nina New", "", "long enough pw", "email", "Enter your email address."),
    ("Nina New", "nina@test.crm", "short", "password", "Use at least 10 characters."),
    ("Nina New", "nina@test.crm", " " * 12, "password", "A password cannot be only spaces."),
    ("Nina New", "nina@test.crm", "aaaaaaaaaa", "password",
     'Too easy to guess. Repeats like "aaa" are easy to guess. '
     "Add another word or two. Uncommon words are better."),
    ("Nina New", "nina@test.crm", "password12", "password",
     "Too easy to guess. This is a very common password. "
     "Add another word or two. Uncommon words are better."),
    ("   ", "nina@test.crm", "long enough pw", "name", "Enter a name."),
    ("Nina New", "abe@test.crm", "long enough pw", "email", "Someone on the team already has this email."),
    ("Nina New", "nina@test.crm'; DROP TABLE users;--", "long enough pw", "email",
     "That is not an email address (like name@company.com)."),
]


def test_bad_new_users_are_explained_where_typed_and_markup_names_are_stored_as_text(
        page, app_session, hostile_users, dialogs):
    sign_in_as(page, "Abe Admin", "/users")
    expect(page.locator(".user-row").first).to_be_visible()
    before = _user_count(app_session)

    for name, email, password, where, said in USER_ATTEMPTS:
        _add_user(page, name=name, email=email, password=password)
        message = page.locator(f".error-{where}")
        expect(message).to_have_text(said)
        _beside(page, page.locator(f"#field-{where}"), message)
        expect(page.locator("[class*=error-]")).to_have_count(1)  # one message, under the one field
        expect(page.locator("#field-name")).to_have_value(name)  # what was typed stays
        expect(page.locator("#field-email")).to_have_value(email)
        assert _user_count(app_session) == before, (name[:20], email)
    # A name longer than the column cannot be typed: the input stops at its 120 characters (the service
    # refuses a longer one sent anyway: tests/test_form_limits.py).
    page.locator("#field-name").fill("N" * 5000)
    expect(page.locator("#field-name")).to_have_value("N" * 120)

    # Markup and SQL-looking names are names like any other: stored and shown exactly as typed.
    for name, email in ((IMG, hostile_users[0]), (SQL, hostile_users[1])):
        _add_user(page, name=name, email=email, password="long enough pw")
        expect(page.locator(".users-message")).to_have_text(f"Added {name}: hand them their first password.")
        row = page.locator(f".user-row[data-email='{email}']")
        expect(row.locator("td").first).to_have_text(name)
        expect(page.locator("#field-name")).to_have_value("")
    assert page.locator("img[src=x], .user-row img").count() == 0
    assert dialogs == []
    app_session.expire_all()
    stored = dict(app_session.execute(text("SELECT email, name FROM users WHERE email IN ('img.user@test.crm', "
                                           "'robert.tables@test.crm')")).all())
    assert stored == {hostile_users[0]: IMG, hostile_users[1]: SQL}
    assert _user_count(app_session) == before + 2  # the table is there, with everyone in it
    # Shown as text again after a reload (from the database, not from what the form kept).
    page.reload()
    expect(page.locator(f".user-row[data-email='{hostile_users[0]}'] td").first).to_have_text(IMG)
    assert page.locator(".user-row img").count() == 0
    assert dialogs == []


# --- Import ---------------------------------------------------------------------------------------

HEADER = "Full Name,E-mail,Organisation,Employees,Lead Source,Amount,Industry\n"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1;alert(1)"> Eve'
HOSTILE_COMPANY = "Robert'); DROP TABLE leads;--"
HOSTILE_CUSTOM = "<script>window.__pwned=2</script>"


def _csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def stored_lead(app_session):
    """A lead the files below would update: a failing import must leave it as it is."""
    return make_lead(app_session, "Imogen Import", now=APP_NOW, company="Original Co", company_size=40,
                     source=Source.EVENTS, deal_value=5000)


def _leads(app_session) -> list:
    return app_session.execute(text("SELECT * FROM leads ORDER BY id")).all()


def _upload(page, path) -> None:
    page.locator(".csv-drop input[type=file]").set_input_files(str(path))
    expect(page.locator(".uploaded-name")).to_have_text(path.name)


def test_a_hostile_import_names_each_bad_row_and_field_imports_nothing_then_stores_text_verbatim(
        page, app_session, stored_lead, dialogs, tmp_path):
    good = [
        f"Imogen Import,imogen.import@example.com,Overwritten Co,41,Events,5000,Retail\n",
        f"{_csv_cell(HOSTILE_NAME)},eve.hostile@example.com,{_csv_cell(HOSTILE_COMPANY)},12,Referral,100,"
        f"{_csv_cell(HOSTILE_CUSTOM)}\n",
        "Huge Number,huge.number@example.com,Bigco,10,Referral,100,1e999\n",
    ]
    bad = [
        f"{'Z' * 201},oversized@example.com,Zco,10,Referral,100,\n",          # row 4: name too long
        "Tom Twelve,tom@example.com,Tco,twelve,Referral,100,\n",               # row 5: words for a number
        "Ann Amount,ann@example.com,Aco,10,Referral,1e99,\n",                 # row 6: an absurd amount
        f"Carl Company,carl@example.com,{'C' * 5000},10,Referral,100,\n",     # row 7: company too long
        "Bobby Tables,bobby@example.com'; DROP TABLE leads;--,Bco,10,Referral,100,\n",  # row 8: not an email
    ]
    path = tmp_path / "hostile.csv"
    path.write_text(HEADER + "".join(good + bad), encoding="utf-8")
    before = _leads(app_session)

    sign_in_as(page, "Maya Manager", "/import")
    _upload(page, path)
    # The preview shows the markup as text.
    expect(page.locator(".preview-row").nth(1)).to_contain_text(HOSTILE_NAME)
    expect(page.locator(".preview-row").nth(1)).to_contain_text(HOSTILE_CUSTOM)
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("5 of 8 rows have problems")
    reported = [[cell.strip() for cell in row.locator("td").all_inner_texts()]
                for row in page.locator(".report-row").all()]
    assert reported == [
        ["4", "Full Name", "Name is 201 characters long; at most 200 are kept."],
        ["5", "Employees", '"twelve" is not a whole number of employees.'],
        ["6", "Amount", '"1e99" is larger than the largest deal value stored (9,999,999,999.99).'],
        ["7", "Organisation", "Company is 5000 characters long; at most 200 are kept."],
        ["8", "E-mail", "\"bobby@example.com'; DROP TABLE leads;--\" is not an email address."],
    ]
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-message")).to_contain_text("Nothing was imported")
    expect(page.locator(".report-row")).to_have_count(5)
    app_session.expire_all()
    assert _leads(app_session) == before  # all or nothing: the good rows did not go in either

    # Without the bad rows, the same values go in, as typed.
    fixed = tmp_path / "hostile-fixed.csv"
    fixed.write_text(HEADER + "".join(good), encoding="utf-8")
    _upload(page, fixed)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 2, updated 1, skipped 0")
    app_session.expire_all()
    eve = app_session.execute(text("SELECT id, name, company, custom_fields FROM leads "
                                   "WHERE email = 'eve.hostile@example.com'")).one()
    assert (eve.name, eve.company, eve.custom_fields) == (HOSTILE_NAME, HOSTILE_COMPANY, {"Industry": HOSTILE_CUSTOM})
    assert app_session.execute(text("SELECT custom_fields FROM leads WHERE email = 'huge.number@example.com'")
                               ).scalar_one() == {"Industry": "1e999"}
    assert app_session.get(Lead, stored_lead.id).company == "Overwritten Co"

    # On the lead's page every value is plain text; nothing in it ran.
    page.goto(f"/leads/{eve.id}")
    expect(page.get_by_role("heading", name=re.compile("onerror"))).to_have_text(HOSTILE_NAME)
    expect(page.get_by_text(HOSTILE_COMPANY).first).to_be_visible()
    expect(page.get_by_text(HOSTILE_CUSTOM).first).to_be_visible()
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    assert dialogs == []
    assert app_session.execute(text("SELECT count(*) FROM leads")).scalar_one() == len(before) + 2
