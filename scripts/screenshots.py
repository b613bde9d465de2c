"""Take a screenshot of each page of a running app for the README.

    .venv/bin/python scripts/screenshots.py [--url http://localhost:3000] [--out docs/screenshots]

Needs the app running with demo data (bash scripts/start.sh) and Chromium (CRM_CHROMIUM or `chromium`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# (file name, path, a selector that shows the page has its data)
PAGES = [
    ("dashboard", "/", ".queue-item, .empty-state"),
    ("leads", "/leads", ".lead-row"),
    ("lead-detail", None, ".reason-row"),
    ("pipeline", "/pipeline", "[data-rfd-draggable-id]"),
    ("analytics", "/analytics", ".js-plotly-plot"),
    ("settings", "/settings", "input"),
    ("model", "/model", ".calibration-chart"),  # managers only: taken as the demo manager
]


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
        page = browser.new_page(viewport={"width": 1440, "height": 900}, base_url=args.url)
        page.set_default_timeout(30_000)
        for name, path, ready in PAGES:
            if path is None:  # the detail page of the best lead on the list
                page.goto("/leads")
                page.locator(".lead-row .lead-name").first.click()
            else:
                page.goto(path)
            if name == "model":
                page.locator(".viewer-picker button").click()
                page.get_by_role("option", name=re.compile(r"\(manager\)$")).first.click()
            page.locator(ready).first.wait_for()
            page.wait_for_timeout(1500)  # let charts and fonts settle
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"{out / name}.png")
        browser.close()


if __name__ == "__main__":
    main()
