"""How long the Import page takes to answer a mapping change on a large file, measured in a browser.

    .venv/bin/python scripts/benchmark_import_page.py [--url http://localhost:3000] [--rows 9240] [--runs 6]

Needs the app running with the demo team (bash scripts/start.sh) and Chromium (CRM_CHROMIUM or
`chromium`). Signs in as the demo manager, uploads a generated lead-history export
(crm_app/demo/crm_export.py, 37 columns) and prints, in milliseconds, the time from choosing a
file to its first preview, and from choosing another field for a column (Tags: custom field <->
ignore) to the preview showing the change. The clock starts when the page sends the change over its
websocket, so Playwright's own wait for the option to be clickable is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from crm_app.demo.crm_export import write_lead_history_csv  # noqa: E402
from scripts.screenshots import ARGS, MANAGER, sign_in  # noqa: E402

COLUMN = "Tags"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:3000")
    parser.add_argument("--rows", type=int, default=9_240)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    executable = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        path = write_lead_history_csv(Path(folder) / "lead-history.csv", rows=args.rows)
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        page = sign_in(browser, args.url, MANAGER)
        page.set_default_timeout(120_000)
        sent: list[float] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda _: sent.append(time.perf_counter())))
        page.goto("/import")
        page.locator(".csv-drop input[type=file]").wait_for(state="attached")
        started = time.perf_counter()
        page.locator(".csv-drop input[type=file]").set_input_files(str(path))
        first_row = page.locator(".preview-row").first
        first_row.wait_for()
        first = (time.perf_counter() - started) * 1000
        print(f"choose file -> first preview ({args.rows:,} rows): {first:.0f} ms")
        shown = "Tags: " in first_row.inner_text()
        times = []
        for _ in range(args.runs):
            page.get_by_role("combobox", name=f"Field for {COLUMN}").click()
            name = "Ignore" if shown else "Keep as custom field"
            option = page.get_by_role("option", name=name, exact=True)
            sent.clear()
            option.click()
            page.wait_for_function(
                "([shown]) => { const row = document.querySelector('.preview-row');"
                " return row && row.innerText.includes('Tags: ') !== shown; }", arg=[shown], polling="raf")
            times.append((time.perf_counter() - sent[0]) * 1000)
            shown = not shown
        print(f"change a column's field -> preview shows it: min {min(times):.0f} ms, "
              f"median {statistics.median(times):.0f} ms, "
              f"max {max(times):.0f} ms over {len(times)} changes")
        browser.close()


if __name__ == "__main__":
    main()
