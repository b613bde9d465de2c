"""Signing in and out, and pages a role may not see, in a real browser against the running app."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_PASSWORD, email_of, forget_browser, sign_in_as

pytestmark = pytest.mark.e2e


def _signed_out(page) -> None:
    forget_browser(page)


def test_a_signed_out_browser_is_sent_to_sign_in_and_back_after(page) -> None:
    _signed_out(page)
    page.goto("/leads")
    page.wait_for_url(re.compile(r"/sign-in"))
    expect(page.get_by_text("Sign in to see what to do right now")).to_be_visible()
    page.locator(".sign-in-ready").wait_for(state="attached")

    page.locator("#field-email").fill(email_of("Ria Rep"))
    page.locator("#field-password").fill("not the password")
    page.locator(".sign-in-submit").click()
    expect(page.locator(".sign-in-message")).to_have_text("Wrong email or password.")
    expect(page).to_have_url(re.compile(r"/sign-in"))

    page.locator("#field-password").fill(E2E_PASSWORD)
    page.locator(".sign-in-submit").click()
    page.wait_for_url(re.compile(r"/leads/?$"))
    expect(page.locator(".signed-in-name")).to_have_text("Ria Rep")


def test_a_bad_email_is_named_under_the_field(page) -> None:
    _signed_out(page)
    page.goto("/sign-in")
    page.locator(".sign-in-ready").wait_for(state="attached")
    page.locator("#field-email").fill("ria-at-test")
    page.locator("#field-password").fill(E2E_PASSWORD)
    page.locator(".sign-in-submit").click()
    expect(page.locator(".error-email")).to_have_text("That is not an email address (like name@company.com).")


def test_sign_out_ends_the_session(page) -> None:
    page.goto("/")
    expect(page.locator(".signed-in-name")).to_have_text("Ria Rep")
    page.locator(".sign-out").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    page.goto("/pipeline")
    page.wait_for_url(re.compile(r"/sign-in"))


def test_a_rep_is_refused_the_admin_and_manager_pages(page) -> None:
    for path, refusal in (("/model", "Only a manager"), ("/import", "Only a manager")):
        page.goto(path)
        expect(page.get_by_text(re.compile(refusal)).first).to_be_visible()
    page.goto("/users")
    expect(page.locator(".refused")).to_have_text("Only an admin can manage users.")
    expect(page.locator(".user-row")).to_have_count(0)
    page.goto("/audit")
    expect(page.locator(".refused")).to_have_text("Only a manager can read the audit log.")
    expect(page.locator(".audit-row")).to_have_count(0)
    # Nor are they offered in the navigation.
    for link in ("Users", "Audit log", "Import", "Model"):
        expect(page.get_by_role("link", name=link)).to_have_count(0)


def test_a_manager_reads_the_audit_log(page) -> None:
    sign_in_as(page, "Maya Manager", "/audit")
    expect(page.get_by_role("link", name="Audit log")).to_be_visible()
    expect(page.locator(".refused")).to_have_count(0)
    expect(page.get_by_text("When (UTC)")).to_be_visible()


def test_changing_ones_password_on_the_account_page(page, app_session) -> None:
    """The current password is checked against the stored hash, which the web app's database login
    may not read (migration 0016): the page checks it as the tables' owner, for the signed-in user."""
    from crm_app.db.models import utcnow
    from crm_app.services import accounts
    from crm_app.services.errors import SignInRefused
    from tests.factories import make_user

    make_user(app_session, "Pat Password")  # a user of this test's own: the others keep theirs
    sign_in_as(page, "Pat Password", "/account")
    page.locator("#field-current").fill("not my password at all")
    page.locator("#field-new").fill("a brand new secret 42")
    page.locator("#field-confirm").fill("a brand new secret 42")
    page.locator(".change-password").click()
    expect(page.locator(".error-current")).to_have_text("That is not your current password.")
    page.locator("#field-current").fill(E2E_PASSWORD)
    page.locator(".change-password").click()
    expect(page.locator(".password-saved")).to_be_visible()
    accounts.sign_in(app_session, email=email_of("Pat Password"), password="a brand new secret 42", now=utcnow())
    with pytest.raises(SignInRefused):
        accounts.sign_in(app_session, email=email_of("Pat Password"), password=E2E_PASSWORD, now=utcnow())
