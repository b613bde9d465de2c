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
    ("forecast", MANAGER, "/forecast", ".backtest-ready .js-plotly-plot"),
    ("analytics-lost-reasons", MANAGER, "/analytics", ".lost-by-source"),
    ("model", MANAGER, "/model", ".calibration-chart"),
    ("import", MANAGER, "/import", "input[type=file], .rt-Button:visible"),
    ("settings", MANAGER, "/settings", "input"),
    ("audit", MANAGER, "/audit", "table"),
    ("users", ADMIN, "/users", ".user-row"),
    ("api-keys", ADMIN, "/api-keys", ".key-row"),
    # The safety nets (README "Safety nets"): each is staged by SCENES below, and left as it was.
    ("search", REP, "/leads", ".lead-row"),
    ("undo", REP, "/pipeline", "[data-rfd-draggable-id]"),
    ("engine-confirm", MANAGER, "/model", ".engine-choice"),
]
# The same app on a phone (390 x 844, an iPhone 12-14): the pages a rep works from on the road.
PHONE = {"width": 390, "height": 844}
PHONE_PAGES = [
    ("phone-today", REP, "/", ".queue-item, .empty-state"),
    ("phone-pipeline", REP, "/pipeline", "[data-rfd-draggable-id]"),
    ("phone-leads", REP, "/leads", ".lead-row"),
    ("phone-lead-detail", REP, None, ".reason-row"),
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


def _search(page) -> None:
    page.locator("body[data-shortcuts=ready]").wait_for(state="attached")
    page.keyboard.press("Control+k")
    page.locator("#global-search-input").fill("gr")
    page.locator(".search-hit").first.wait_for()


def _undo(page) -> None:
    """Move the best New deal to Contacted from its menu, and show the toast."""
    page.locator('[data-rfd-droppable-id="new"] [data-rfd-draggable-id] .card-menu').first.click()
    page.locator(".move-to-contacted").click()
    page.locator(".undo-toast").wait_for()


def _undo_after(page) -> None:
    page.locator(".undo-toast").get_by_role("button", name="Undo").click()  # the demo data as it was
    page.get_by_text("Undone:").first.wait_for()


def _engine_confirm(page) -> None:
    current = page.locator(".effective-engine").inner_text()
    page.get_by_role("radio", name="Rules" if current.startswith("Model") else "Model").click()
    page.locator(".switch-confirm .confirm-impact").wait_for()


def _engine_confirm_after(page) -> None:
    page.locator(".switch-confirm .confirm-cancel").click()


# What to do on a page before its screenshot, and after it (put things back).
SCENES = {"search": (_search, lambda page: page.keyboard.press("Escape")), "undo": (_undo, _undo_after),
          "engine-confirm": (_engine_confirm, _engine_confirm_after)}


def sign_in(browser, url: str, email: str | None, viewport: dict | None = None):
    """A new browser context (no cookie, no app state), signed in through the form as `email`."""
    page = browser.new_page(viewport=viewport or {"width": 1440, "height": 900}, base_url=url)
    page.set_default_timeout(30_000)
    if email is not None:
        page.goto("/sign-in")
        page.locator(".sign-in-ready").wait_for(state="attached")  # the page's state has arrived
        page.locator("#field-email").fill(email)
        page.locator("#field-password").fill(DEMO_PASSWORD)
        page.locator(".sign-in-submit").click()
        # The server set the (HttpOnly) session cookie before this page. (The export serves "/sign-in/":
        # a bare "ends in /" test would match before the sign-in.)
        page.wait_for_url(lambda url: urlsplit(url).path.rstrip("/") == "")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:3000")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--only", default="", help="comma-separated names: take only these (e.g. search,undo)")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    executable = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        page, signed_in = None, ""
        shots = [(*row, None) for row in PAGES] + [(*row, PHONE) for row in PHONE_PAGES]
        for name, who, path, ready, viewport in shots:
            if only and name not in only:
                continue
            if page is None or (who, viewport) != signed_in:
                if page is not None:
                    page.close()
                page, signed_in = sign_in(browser, args.url, who, viewport), (who, viewport)
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
            before, after = SCENES.get(name, (None, None))
            if before is not None:
                before(page)
            page.wait_for_timeout(1500)  # let charts and fonts settle
            if name in PARTS:
                page.locator(PARTS[name]).scroll_into_view_if_needed()
                page.locator(PARTS[name]).screenshot(path=str(out / f"{name}.png"))
            else:
                page.screenshot(path=str(out / f"{name}.png"))  # (a phone's: its first screen, as a rep sees it)
            if after is not None:
                after(page)
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
