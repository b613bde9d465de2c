"""How long an import takes through the web path and the command line, into databases holding many
leads, and how much memory the importing process needs.

    .venv/bin/python scripts/benchmark_import.py [--server URL] [--stored 10000,100000] [--million]
                                                 [--rows 5000,100000] [--template DB[,DB...]] [--keep]
                                                 [--steps] [--paths cli,web]

For each stored size it seeds a template database of its own on the server (`--server`, default the
machine's PostgreSQL): migrated, a manager, two reps and that many stored leads
(crm_app/demo/import_load.py: one set-based INSERT, then ANALYZE). `--template DB` instead takes an
existing database (a copy of the demo's million leads, say; it is only copied, never changed) as a
stored size; several, comma-separated, are each one size, and `--stored` then adds seeded sizes beside
them (`--stored 10000 --template crm_100k,crm_1m`: 10k, 100k and 1M stored leads in one run). For each file size it writes a generated file (a third of its rows match stored leads
by email, a third by external id, a third are new; with --template: two thirds match whatever the
stored leads carry) and imports that same file once each way, each in a fresh process and each into a
fresh copy of the template (`CREATE DATABASE ... TEMPLATE`), so every run starts from the same state:

- cli: the command line's path, as the tables' owner (`python -m crm_app.cli import`);
- web: the Import page's path: an import job with its heartbeat, on the web app's login acting as
  the manager under row-level security.

Prints seconds, rows per second, the process's peak memory (max RSS: reading, checking and writing
the file) and web/cli per size, with the machine's load average beside each run (the machine is
shared: compare runs made together). `--steps` also prints how long each step of each import took
(the steps its progress names: reading, matching, scoring, storing new leads, updating matched ones,
then the stage history and commit). `--million` adds 1,000,000 stored leads (seeding takes minutes);
`--keep` keeps the seeded templates (named crm_bench_tpl_<size>; see --prefix) for the next run to
reuse.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import ensure_database, login_role_url, make_app_engine, make_engine, normalize_url  # noqa: E402
from crm_app.db.migrate import upgrade_to_head  # noqa: E402
from crm_app.db.security import act_as, read_acting_key  # noqa: E402
from crm_app.demo.import_load import (  # noqa: E402
    MAPPING,
    seed_stored_leads,
    seed_team,
    write_file_for,
    write_import_file,
)


def _one_import(path_kind: str, url: str, file: str) -> None:
    """In a process of its own: import `file` one way, print seconds, summary and peak memory as JSON."""
    from crm_app.services import import_runs
    from crm_app.services.importing import import_file

    owner = make_engine(url)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    started = time.perf_counter()
    steps: list[list] = []  # [step, seconds from the start until the next step began]

    def progress(step) -> None:
        name = ("Reading and checking the file" if step.phase == "reading"
                else "Done" if step.phase == "done" else step.message)
        if not steps or steps[-1][0] != name:
            steps.append([name, time.perf_counter() - started])

    if path_kind == "cli":
        with Session(owner, expire_on_commit=False) as session:
            summary = import_file(session, Path(file), MAPPING, now=clock(), progress=progress)
    else:
        def key() -> bytes:
            with owner.connect() as conn:
                return read_acting_key(conn)

        web = make_app_engine(login_role_url(url), key)
        with owner.connect() as conn:
            manager = conn.execute(text("SELECT id FROM users WHERE role = 'manager' AND is_active "
                                        "ORDER BY id LIMIT 1")).scalar_one()
        open_owner = lambda: Session(owner, expire_on_commit=False)  # noqa: E731
        with open_owner() as session:
            job_id = import_runs.start_job(session, manager, Path(file).name, clock())
        control = import_runs.ImportControl()
        with import_runs.heartbeat(open_owner, job_id, control, clock), \
                act_as(Session(web, expire_on_commit=False), manager) as session:
            summary = import_file(session, Path(file), MAPPING, now=clock(), actor_id=manager, control=control,
                                  progress=progress)
        with open_owner() as session:
            import_runs.finish_job(session, job_id, "succeeded", clock())
    seconds = time.perf_counter() - started
    # Each step's own time: until the next step began.
    marks = [at for _, at in steps[1:]] + [seconds]
    timed = [(name, end - at) for (name, at), end in zip(steps, marks)]
    print(json.dumps({"seconds": seconds, "steps": [["Starting", steps[0][1] if steps else seconds]] + timed, "created": summary.created, "updated": summary.updated,
                      "skipped": summary.skipped,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run(path_kind: str, url: str, file: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", path_kind, url, str(file)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{path_kind} import failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _admin(admin_url: str, statement: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def _copy(admin_url: str, template: str, name: str, wait: float = 300) -> None:
    """CREATE DATABASE name TEMPLATE template, retried while someone else is connected to the template
    (a shared template on a shared server: PostgreSQL refuses the copy until they leave). File by file
    (STRATEGY FILE_COPY, as benchmark.py copies): PostgreSQL 15's default writes the whole copy to the
    WAL (6.3 GB for the demo's million), and the checkpoints that sets off overlapped the import timed
    next."""
    deadline = time.monotonic() + wait
    while True:
        try:
            _admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            return
        except Exception as error:  # noqa: BLE001 - only "being accessed by other users" is waited out
            if "being accessed by other users" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(3)


def _exists(admin_url: str, name: str) -> bool:
    admin = create_engine(admin_url)
    try:
        with admin.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())
    finally:
        admin.dispose()


def _url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _seeded_template(admin_url: str, stored: int, prefix: str) -> str:
    """A database holding `stored` generated leads and the bench team (reused when kept earlier)."""
    name = f"{prefix}_tpl_{stored}"
    if _exists(admin_url, name):
        print(f"# reusing {name}", flush=True)
        return name
    ensure_database(admin_url, name)
    url = _url(admin_url, name)
    upgrade_to_head(url)
    engine = make_engine(url)
    seed_team(engine)
    seeded = time.perf_counter()
    seed_stored_leads(engine, stored)
    engine.dispose()
    print(f"# {stored:,} stored leads seeded in {time.perf_counter() - seeded:.0f} s", flush=True)
    return name


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _one_import(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--stored", help="stored leads to seed, comma-separated (default 10000,100000 without "
                                         "--template)")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 stored leads")
    parser.add_argument("--rows", default="5000,100000", help="rows per imported file, comma-separated")
    parser.add_argument("--template", help="existing databases to copy as stored leads, comma-separated (each "
                                           "one size; seeded sizes only with --stored)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded templates for the next run")
    parser.add_argument("--steps", action="store_true", help="print each import's time per step")
    parser.add_argument("--paths", default="cli,web", help="which paths to run, comma-separated (at 1M each "
                                                          "run copies the template: one path halves the time)")
    parser.add_argument("--prefix", default="crm_bench", help="names of the databases made: PREFIX_tpl_<size>, "
                                                              "PREFIX_run_<pid>")
    args = parser.parse_args()
    admin_url = make_url(normalize_url(args.server)).set(database="postgres").render_as_string(hide_password=False)
    stored_sizes = args.stored if args.stored is not None else ("" if args.template else "10000,100000")
    sizes = [int(s) for s in stored_sizes.split(",") if s] + ([1_000_000] if args.million else [])
    templates = [(stored, None) for stored in sizes]
    templates += [(None, name) for name in (args.template or "").split(",") if name]
    file_rows = [int(r) for r in args.rows.split(",") if r]
    print(f"{'stored':>10} {'file rows':>10} {'path':>4} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} "
          f"{'created/updated/skipped':>24}  machine")
    run = f"{args.prefix}_run_{os.getpid()}"
    with tempfile.TemporaryDirectory() as folder:
        for stored, template in templates:
            seeded = template is None
            if seeded:
                template = _seeded_template(admin_url, stored, args.prefix)
            else:
                engine = make_engine(_url(admin_url, template))
                with engine.connect() as conn:
                    stored = conn.execute(text("SELECT count(*) FROM leads")).scalar_one()
                engine.dispose()
            try:
                for n, rows in enumerate(file_rows):
                    times = {}
                    file = None  # the same file both ways, written once
                    for path_kind in [p for p in ("cli", "web") if p in args.paths.split(",")]:
                        _admin(admin_url, f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
                        _copy(admin_url, template, run)
                        url = _url(admin_url, run)
                        try:
                            if not seeded:
                                upgrade_to_head(url)  # a template from an older revision
                            target = Path(folder) / f"{rows}.csv"
                            if file is None and seeded:
                                file = write_import_file(target, rows, stored=stored, tag=f"f{n}-",
                                                         seed_offset=n * 104_729)
                            elif file is None:
                                engine = make_engine(url)
                                file = write_file_for(engine, target, rows, tag=f"f{n}-", seed_offset=n)
                                engine.dispose()
                            result = _run(path_kind, url, file)
                        finally:
                            _admin(admin_url, f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
                        times[path_kind] = result["seconds"]
                        print(f"{stored:>10,} {rows:>10,} {path_kind:>4} {result['seconds']:>8.1f} "
                              f"{rows / result['seconds']:>8,.0f} {result['max_rss_mb']:>8.0f} "
                              f"{result['created']:>8,}/{result['updated']:,}/{result['skipped']:,}  {_load()}",
                              flush=True)
                        if args.steps:
                            for name, took in result["steps"]:
                                print(f"{'':>32}{took:>8.1f}  {name[:70]}", flush=True)
                    if len(times) == 2:
                        print(f"{'':>10} {'':>10} web/cli {times['web'] / times['cli']:.2f}x", flush=True)
            finally:
                if seeded and not args.keep:
                    _admin(admin_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


if __name__ == "__main__":
    main()
