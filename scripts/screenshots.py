"""Take a screenshot of each page of a running app for the README.

    .venv/bin/python scripts/screenshots.py [--url http://localhost:3000] [--out docs/screenshots]

Needs the app running with demo data (bash scripts/start.sh) and Chromium (CRM_CHROMIUM or `chromium`).
Signs in through the sign-in form as the demo people (password in the README, demo only).
"""

from __future__ import annotations

import argparse
import os
import shutil
from urllib.parse import urlsplit
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

REP, MANAGER, ADMIN = "riley@demo.crm", "maya@demo.crm", "adam@demo.crm"
DEMO_PASSWORD = "demo-password"
# (file name, who looks, path, a selector that shows the page has its data)
PAGES = [
    ("sign-in", None, "/sign-in", ".sign-in-submit"),
    ("dashboard", REP, "/", ".queue-item, .empty-state"),
    ("leads", REP, "/leads", ".lead-row"),
    ("quick-add", REP, "/leads", ".lead-row"),  # then "+ Lead" is clicked (OPENS below)
    ("lead-detail", REP, None, ".reason-row"),
    ("pipeline", REP, "/pipeline", "[data-rfd-draggable-id]"),
    ("notifications", REP, "/pipeline", "[data-rfd-draggable-id]"),
    ("next-steps", REP, None, ".reason-row"),
    ("lost-reason", REP, None, ".reason-row"),
    ("analytics", MANAGER, "/analytics", ".js-plotly-plot"),
    ("analytics-lost-reasons", MANAGER, "/analytics", ".lost-by-source"),
    ("model", MANAGER, "/model", ".calibration-chart"),
    ("import", MANAGER, "/import", "input[type=file], .rt-Button"),
    ("settings", MANAGER, "/settings", "input"),
    ("audit", MANAGER, "/audit", "table"),
    ("users", ADMIN, "/users", ".user-row"),
    ("api-keys", ADMIN, "/api-keys", ".key-row"),
]


# Pages shown with something opened on them: what to click, in order, and what must then be visible.
# Nothing here saves anything: the demo data stays as it was.
OPENS = {
    "quick-add": (["#quick-add-lead"], ".quick-add-form"),
    "notifications": ([".bell-button"], ".bell-panel"),
    "next-steps": ([".offer-next-step"], ".next-step-panel"),
    "lost-reason": (['[aria-label="Move to stage"]', '[role="option"]:has-text("Lost")'], ".close-deal-dialog"),
}
# How an opened piece that is not a dialog or popover closes (those close with Escape).
CLOSES = {"next-steps": ".skip-next-step"}
# Pages shown as one part of them (an element screenshot).
PARTS = {"analytics-lost-reasons": ".lost-reasons"}


def sign_in(browser, url: str, email: str | None):
    """A new browser context (no cookie, no app state), signed in through the form as `email`."""
    page = browser.new_page(viewport={"width": 1440, "height": 900}, base_url=url)
    page.set_default_timeout(30_000)
    if email is not None:
        page.goto("/sign-in")
        page.locator(".sign-in-ready").wait_for(state="attached")  # the page's state has arrived
        page.locator("#field-email").fill(email)
        page.locator("#field-password").fill(DEMO_PASSWORD)
        page.locator(".sign-in-submit").click()
        # The server set the (HttpOnly) session cookie before this page ("/sign-in?next=/" ends in "/" too).
        page.wait_for_url(lambda address: urlsplit(address).path == "/")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:3000")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    executable = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        page, signed_in = None, ""
        for name, who, path, ready in PAGES:
            if page is None or who != signed_in:
                if page is not None:
                    page.close()
                page, signed_in = sign_in(browser, args.url, who), who
            if path is None:  # the detail page of the best lead on the list
                page.goto("/leads")
                page.locator(".lead-row .lead-name").first.click()
            else:
                page.goto(path)
            page.locator(ready).first.wait_for()
            if name in OPENS:
                clicks, opened = OPENS[name]
                for selector in clicks:
                    page.locator(selector).first.click()
                page.locator(opened).first.wait_for()
            page.wait_for_timeout(1500)  # let charts and fonts settle
            if name in PARTS:
                page.locator(PARTS[name]).scroll_into_view_if_needed()
                page.locator(PARTS[name]).screenshot(path=str(out / f"{name}.png"))
            else:
                page.screenshot(path=str(out / f"{name}.png"))
            if name in OPENS:  # closed again: the tab's state (and so what is open) outlives a page load
                if name in CLOSES:
                    page.locator(CLOSES[name]).first.click()
                else:
                    page.keyboard.press("Escape")
                page.locator(OPENS[name][1]).first.wait_for(state="hidden")
            print(f"{out / name}.png")
        browser.close()


if __name__ == "__main__":
    main()
