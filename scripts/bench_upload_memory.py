"""Memory of the web worker while the Import page takes a large CSV (issue #17 item 6): prints the
worker's resident memory before the upload, its peak while the file is uploaded and profiled, and
10 s after the page shows the file.

    python scripts/bench_upload_memory.py --url http://127.0.0.1:3000 --pid WORKER_PID \\
        --email maya@demo.crm --password demo-password --mb 165

WORKER_PID is the process serving the app (the granian worker: `pgrep -f granian` shows it). The CSV is
generated (names, emails, a source, a few custom columns) to about --mb megabytes. A figure, not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """The process and its children (granian's worker may be a child of the server process)."""
    total = rss_mb(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for kid in child.read_text().split():
            try:
                total += tree_rss_mb(int(kid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def make_csv(path: Path, megabytes: float) -> int:
    rng = random.Random(17)
    target, rows = int(megabytes * 1024 * 1024), 0
    with path.open("w", newline="") as handle:
        handle.write("Name,Email,Lead Source,Industry,Region,Budget,Notes\n")
        while handle.tell() < target:
            rows += 1
            handle.write(f"Bench Person {rows},bench{rows}@example.com,{rng.choice(['Referral', 'Website'])},"
                         f"{rng.choice(['Retail', 'Banking', 'Health'])},{rng.choice(['North', 'South'])},"
                         f"{rng.randint(1000, 90000)},{'x' * rng.randint(20, 80)}\n")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--mb", type=float, default=165)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp())
    path = folder / "bench-large.csv"
    rows = make_csv(path, args.mb)
    print(f"file: {path.stat().st_size / 1024 / 1024:.0f} MB, {rows:,} rows")
    executable = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    peak, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(args.pid))
            time.sleep(0.1)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(base_url=args.url)
        page.set_default_timeout(600_000)
        page.goto("/sign-in?next=/import")
        page.locator("#field-email").fill(args.email)
        page.locator("#field-password").fill(args.password)
        page.locator(".sign-in-submit").click()
        page.wait_for_url("**/import")
        page.locator(".csv-drop").wait_for()
        time.sleep(2)
        before = tree_rss_mb(args.pid)
        print(f"worker RSS before: {before:.0f} MB")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        page.locator(".csv-drop input[type=file]").set_input_files(str(path))
        page.locator(".uploaded-name").wait_for()
        page.locator(".preview-row").first.wait_for()
        print(f"uploaded and previewed in {time.monotonic() - started:.1f} s")
        time.sleep(10)
        stop.set()
        sampler.join()
        print(f"worker RSS peak: {peak[0]:.0f} MB; 10 s after: {tree_rss_mb(args.pid):.0f} MB")
        page.get_by_role("button", name="Start over").click()
        browser.close()
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
