"""How the REST API holds up with 100,000 leads: sustained requests and events per second, with latency.

    python scripts/benchmark_api.py [--leads 100000] [--database-url URL] [--database crm_bench_api]
                                    [--use-database URL] [--url URL] [--workers 1]
                                    [--clients 1 4] [--duration 10] [--scenarios event batch100 ...]

Prepares a database as scripts/benchmark.py does (a scratch database `--database` on the server of
--database-url / BENCH_DATABASE_URL, else the embedded PostgreSQL, filled by the demo generator), or
takes one already generated with --use-database URL (no regeneration). In it, adds a manager
"API Bench" and a write key acting as them with a high rate limit (each run adds a new key).

Starts the API alone (granian, --workers, on a free port) against that database, or targets an
already running app with --url (its DATABASE_URL must be the --use-database one). Then, for each
number of concurrent clients and each scenario, sends requests for --duration seconds from that many
threads (one httpx client each) and prints requests/s, events/s, p50/p95/p99 latency and errors.

Afterwards it checks what the API wrote: the activity count grew by exactly the events the API
accepted (so nothing else may write events to that database meanwhile), and a sample of touched
leads has a score equal to the sum of its reasons' points and to what the team's engine gives all
of its stored events. Figures only: nothing is asserted on timing. The server it started is
stopped; the database is left in place to look at (or to reuse with --use-database).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

# Run as a plain script from anywhere: the app and the other benchmark are importable.
SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path[:0] = [str(REPO_ROOT), str(SCRIPTS)]

from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from benchmark import Bench, figure, insert_demo_data, percentile, scratch_database_url  # noqa: E402
from crm_app.db.engine import make_engine, normalize_url  # noqa: E402
from crm_app.db.models import Lead, User  # noqa: E402
from crm_app.domain import Role  # noqa: E402
from crm_app.services.api_keys import MAX_RATE, create_key  # noqa: E402
from crm_app.services.permissions import CurrentUser  # noqa: E402
from crm_app.services.scoring import active_engine, load_facts  # noqa: E402

DATABASE = "crm_bench_api"
BENCH_USER_EMAIL = "api-bench@bench.crm"
EVENT_TYPES = ("page_visit", "pricing_page_visit", "email_opened", "email_clicked", "demo_request", "email_replied")
REPLIES = (
    "Thanks, this looks interesting. Can we talk next week?",
    "Not a priority for us right now, sorry.",
    "Could you send the pricing for 50 seats?",
    "We went with another vendor.",
)
VERIFY_SAMPLE = 300


# --- What the clients send ---------------------------------------------------------------------


@dataclass
class Workload:
    """What the requests are drawn from: every lead id, and emails of existing leads to update."""

    lead_ids: list[int]
    emails: list[str]
    run: str  # unique per run: new leads' emails and idempotency keys never collide with a past run


def random_event(rng: random.Random, work: Workload) -> dict:
    kind = rng.choice(EVENT_TYPES)
    event = {"lead": {"id": rng.choice(work.lead_ids)}, "type": kind}
    if kind == "email_replied":
        event["subject"] = "Re: your proposal"
        event["body"] = rng.choice(REPLIES)
    elif kind in ("page_visit", "pricing_page_visit"):
        event["subject"] = "https://example.com/pricing" if kind == "pricing_page_visit" else "https://example.com/blog"
    return event


@dataclass
class Outcome:
    """What one request did, as the scenario counts it."""

    label: str  # the figure it goes into (a scenario may time two kinds of request)
    seconds: float
    status: int  # 0: no answer (connection error, timeout)
    events: int = 0  # events the API accepted (stored activities)
    leads: list[int] = field(default_factory=list)  # leads it touched, for the checks
    replayed: bool = False


Scenario = Callable[[httpx.Client, random.Random, Workload, int], list[Outcome]]


def _post(client: httpx.Client, label: str, path: str, body: dict,
          headers: dict | None = None) -> tuple[Outcome, httpx.Response | None]:
    started = time.perf_counter()
    try:
        response = client.post(path, json=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(label, time.perf_counter() - started, 0, leads=[]), _failed(error)
    return Outcome(label, time.perf_counter() - started, response.status_code), response


def _failed(error: Exception) -> None:
    print(f"  request failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    return None


def single_event(client, rng, work, n) -> list[Outcome]:
    outcome, response = _post(client, "POST /events", "/events", random_event(rng, work))
    if outcome.status == 201:
        outcome.events, outcome.leads = 1, [response.json()["lead"]["id"]]
    return [outcome]


def event_batch(size: int) -> Scenario:
    def run(client, rng, work, n) -> list[Outcome]:
        body = {"events": [random_event(rng, work) for _ in range(size)]}
        outcome, response = _post(client, f"POST /events/batch ({size})", "/events/batch", body)
        if outcome.status == 201:
            answer = response.json()
            outcome.events, outcome.leads = answer["accepted"], [lead["id"] for lead in answer["leads"]]
        return [outcome]
    return run


def upsert(client, rng, work, n) -> list[Outcome]:
    """Every other upsert creates a lead, the others update an existing one (matched on email)."""
    if n % 2 == 0:
        body = {"email": f"bench-{work.run}-{threading.get_ident()}-{n}@bench.test", "name": f"Bench Lead {n}",
                "company": "Bench Co", "company_size": rng.randint(1, 5000), "source": "website"}
        label = "POST /leads (new)"
    else:
        body = {"email": rng.choice(work.emails), "title": f"Title {rng.randint(1, 1_000_000)}"}
        label = "POST /leads (existing)"
    outcome, response = _post(client, label, "/leads", body)
    if outcome.status in (200, 201):
        outcome.leads = [response.json()["id"]]
    return [outcome]


def _get(client: httpx.Client, label: str, path: str) -> Outcome:
    started = time.perf_counter()
    try:
        response = client.get(path)
    except httpx.HTTPError as error:
        _failed(error)
        return Outcome(label, time.perf_counter() - started, 0)
    return Outcome(label, time.perf_counter() - started, response.status_code)


def reads(client, rng, work, n) -> list[Outcome]:
    """A page of 50 leads, best first, then one lead by id."""
    return [_get(client, "GET /leads?limit=50", "/leads?limit=50"),
            _get(client, "GET /leads/{id}", f"/leads/{rng.choice(work.lead_ids)}")]


def idempotent(client, rng, work, n) -> list[Outcome]:
    """One event sent twice with the same Idempotency-Key: stored once, the retry answered from the store."""
    body = random_event(rng, work)
    headers = {"Idempotency-Key": f"bench-{work.run}-{uuid.uuid4()}"}
    first, response = _post(client, "POST /events + Idempotency-Key", "/events", body, headers)
    if first.status == 201:
        first.events, first.leads = 1, [response.json()["lead"]["id"]]
    retry, response = _post(client, "  same again (replay)", "/events", body, headers)
    if response is not None:
        retry.replayed = response.headers.get("Idempotent-Replayed") == "true"
    return [first, retry]


SCENARIOS: dict[str, Scenario] = {
    "event": single_event,
    "batch100": event_batch(100),
    "batch1000": event_batch(1000),
    "upsert": upsert,
    "read": reads,
    "idempotent": idempotent,
}


# --- Running and reporting ----------------------------------------------------------------------


@dataclass
class Totals:
    """Over the whole run: what the checks compare the database with."""

    events: int = 0
    replays: int = 0
    retries: int = 0
    touched: set[int] = field(default_factory=set)
    table: list[tuple] = field(default_factory=list)  # (clients, label, req/s, events/s, p50, p95, p99, errors)


def run_scenario(name: str, scenario: Scenario, *, api: str, key: str, clients: int, duration: float,
                 work: Workload, totals: Totals, seed: int) -> None:
    outcomes: list[list[Outcome]] = [[] for _ in range(clients)]
    deadline = [0.0]
    started = [0.0]

    def go() -> None:  # once every client is connected
        started[0] = time.perf_counter()
        deadline[0] = started[0] + duration

    start = threading.Barrier(clients + 1, action=go)

    def client_loop(index: int) -> None:
        rng = random.Random(f"{seed}-{name}-{clients}-{index}")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=120) as client:
            client.get("/me")  # connect before the clock starts
            start.wait()
            n = 0
            while time.perf_counter() < deadline[0]:
                outcomes[index].extend(scenario(client, rng, work, n))
                n += 1

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started[0]  # includes the requests in flight at the deadline
    client_cpu = (time.process_time() - cpu) / elapsed

    done = [o for per_client in outcomes for o in per_client]
    for label in dict.fromkeys(o.label for o in done):
        mine = [o for o in done if o.label == label]
        timings = sorted(o.seconds * 1000 for o in mine)
        errors = Counter(o.status for o in mine if not 200 <= o.status < 300)
        events = sum(o.events for o in mine)
        replays = sum(o.replayed for o in mine)
        parts = [f"{len(mine) / elapsed:8.1f} req/s"]
        if events:
            parts.append(f"{events / elapsed:8.1f} events/s")
        parts.append(f"p50 {percentile(timings, 0.50):7.1f} ms, p95 {percentile(timings, 0.95):7.1f} ms, "
                     f"p99 {percentile(timings, 0.99):7.1f} ms")
        parts.append(f"{len(mine):,} requests")
        if label.strip().startswith("same again"):
            parts.append(f"{replays:,} replayed")
            totals.replays += replays
            totals.retries += len(mine)
        parts.append("errors: " + (", ".join(f"{s or 'no answer'} x{c}" for s, c in sorted(errors.items())) or "none"))
        figure(f"  {label:<32}", " | ".join(parts))
        totals.table.append((clients, label.strip(), len(mine) / elapsed, events / elapsed if events else None,
                             percentile(timings, 0.50), percentile(timings, 0.95), percentile(timings, 0.99),
                             sum(errors.values())))
        totals.events += events
        for outcome in mine:
            totals.touched.update(outcome.leads)
    figure("  client CPU", f"{client_cpu:.0%} of a core (the load generator shares the machine)")


# --- Setting up ---------------------------------------------------------------------------------


def prepare_key(engine: Engine) -> str:
    """A manager "API Bench" (sees every lead) and a new write key acting as them, made by an admin."""
    now = datetime.now(timezone.utc)
    with Session(engine, expire_on_commit=False) as session:
        admin = session.execute(text(
            "SELECT id, email, name FROM users WHERE role = 'admin' AND is_active ORDER BY id LIMIT 1")).first()
        if admin is None:
            raise SystemExit("The database has no active admin to create the API key (is it a generated one?).")
        user = session.execute(text("SELECT id FROM users WHERE lower(email) = :email"),
                               {"email": BENCH_USER_EMAIL}).scalar()
        if user is None:
            bench_user = User(email=BENCH_USER_EMAIL, name="API Bench", role=Role.MANAGER.value, password_hash="!")
            session.add(bench_user)
            session.commit()
            user = bench_user.id
        secret, _ = create_key(session, CurrentUser(admin.id, admin.email, admin.name, Role.ADMIN),
                               name=f"Benchmark {now:%Y-%m-%d %H:%M:%S}", scope="write", user_id=user, now=now,
                               rate_per_minute=MAX_RATE)
    return secret


def load_workload(engine: Engine) -> Workload:
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM leads ORDER BY id")).scalars().all()
        emails = connection.execute(text(
            "SELECT email FROM leads WHERE email IS NOT NULL AND email NOT LIKE 'bench-%' "
            "ORDER BY random() LIMIT 10000")).scalars().all()
    return Workload(lead_ids=list(ids), emails=list(emails), run=uuid.uuid4().hex[:10])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The API alone under granian, in its own process group, against the benchmark database."""

    def __init__(self, database_url: str, workers: int):
        self.log_path = Path(tempfile.mkdtemp(prefix="crm-bench-api-")) / "server.log"
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", port,
             "--workers", str(workers), "crm_app.api:api"],
            cwd=REPO_ROOT, env={**os.environ, "DATABASE_URL": database_url}, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.log.flush()
                raise SystemExit(f"The API server exited ({self.process.returncode}):\n"
                                 f"{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/openapi.json", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"The API server did not start in {timeout:.0f} s; see {self.log_path}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"Nothing answers at {url}/api/v1/openapi.json") from None
            time.sleep(0.5)


# --- Checking what was written -----------------------------------------------------------------


def activity_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM activities")).scalar_one()


def check(engine: Engine, before: int, totals: Totals, seed: int) -> None:
    after = activity_count(engine)
    grown = after - before
    figure("activities added", f"{grown:,}; events accepted {totals.events:,}: "
                               f"{'OK' if grown == totals.events else 'MISMATCH'}")
    if totals.retries:
        figure("idempotent retries answered from the store",
               f"{totals.replays:,} of {totals.retries:,}: {'OK' if totals.replays == totals.retries else 'MISMATCH'}")
    sample = random.Random(seed).sample(sorted(totals.touched), min(VERIFY_SAMPLE, len(totals.touched)))
    if not sample:
        return
    with engine.connect() as connection:
        rows = connection.execute(text(
            """
            SELECT l.id, l.score,
                   (SELECT coalesce(sum((r ->> 'points')::int), 0) FROM jsonb_array_elements(l.score_reasons::jsonb) r)
                       AS points
              FROM leads l WHERE l.id = ANY(:ids)
            """), {"ids": sample}).all()
    wrong_sum = [r.id for r in rows if r.score != r.points]
    figure("touched leads: score = sum of reasons' points",
           f"{len(rows) - len(wrong_sum)} of {len(rows)}: {'OK' if not wrong_sum else f'MISMATCH {wrong_sum[:10]}'}")
    # The stored score is the one the team's engine gives every stored activity at the moment it was
    # scored: no event was left out. (Not a timestamp comparison: a request takes its `now` before it
    # waits for a lead's lock, so the last to commit may carry the older time.)
    with Session(engine) as session:
        leads = session.execute(select(Lead).where(Lead.id.in_(sample))).scalars().all()
        scorer = active_engine(session)
        facts = load_facts(session, leads)
        stale = [lead.id for lead in leads if scorer.score(facts[lead.id], lead.scored_at).score != lead.score]
    figure("touched leads: score = engine on all stored events",
           f"{len(leads) - len(stale)} of {len(leads)}: {'OK' if not stale else f'MISMATCH {stale[:10]}'}")


def print_table(totals: Totals) -> None:
    """Every figure again as one Markdown table, to paste into a note."""
    print("== table", flush=True)
    print("| clients | request | req/s | events/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for clients, label, rate, events, p50, p95, p99, errors in totals.table:
        print(f"| {clients} | {label} | {rate:,.1f} | {'' if events is None else f'{events:,.0f}'} | "
              f"{p50:,.0f} | {p95:,.0f} | {p99:,.0f} | {errors} |")


# --- Main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000, help="leads to generate (default 100,000)")
    parser.add_argument("--activities-per-lead", type=float, default=10.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None,
                        help="a PostgreSQL server to generate the database on (its database name is ignored); "
                             "default: BENCH_DATABASE_URL, else the embedded server")
    parser.add_argument("--database", default=DATABASE,
                        help=f"name of the scratch database to (re)create (default {DATABASE})")
    parser.add_argument("--use-database", metavar="URL",
                        help="an already generated database to use as it is (no generation)")
    parser.add_argument("--url", help="an already running app to send requests to (e.g. http://127.0.0.1:8000 "
                                      "of `reflex run --env prod`); needs --use-database = its DATABASE_URL")
    parser.add_argument("--workers", type=int, default=1, help="granian workers of the server started (default 1)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4],
                        help="numbers of concurrent clients to measure with (default 1 4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (default 10)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.url and not args.use_database:
        parser.error("--url needs --use-database: the database the running app uses")

    if args.use_database:
        url = normalize_url(args.use_database)
    else:
        url = scratch_database_url(args.database_url, args.database)
    figure("database", make_url(url).render_as_string(hide_password=True))
    engine = make_engine(url)
    server: Server | None = None
    # A Ctrl-C or a kill still stops the server (through the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if not args.use_database:
            print("== generating", flush=True)
            insert_demo_data(Bench(engine=engine, now=datetime.now(timezone.utc), leads=args.leads,
                                   activities_per_lead=args.activities_per_lead, seed=args.seed))
        key = prepare_key(engine)
        work = load_workload(engine)
        figure("leads in the database", f"{len(work.lead_ids):,}")
        if args.url:
            api = args.url.rstrip("/")
            wait_for(api)
            figure("server", f"{api} (already running)")
        else:
            server = Server(url, args.workers)
            server.wait()
            api = server.url
            figure("server", f"granian --workers {args.workers} at {api} (log {server.log_path})")

        totals = Totals()
        before = activity_count(engine)
        for clients in args.clients:
            for name in args.scenarios:
                print(f"== {name}, {clients} client{'s' if clients > 1 else ''}, {args.duration:g} s", flush=True)
                run_scenario(name, SCENARIOS[name], api=api, key=key, clients=clients, duration=args.duration,
                             work=work, totals=totals, seed=args.seed)
        print("== checks", flush=True)
        check(engine, before, totals, args.seed)
        print_table(totals)
    finally:
        if server is not None:
            server.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
