#!/usr/bin/env python3
"""Websocket round trips against the real app (issue #15, item 6): the empty handler's floor, a
drag-and-drop move on the Pipeline board, a leads search and the Today load, at 1/10/50 clients.

Each client is a signed-in browser tab (the sign-in is the browser's path, scripts/benchmark_memory.py)
of one of the demo team's reps, round robin. A tab opens the Pipeline board, loads the Leads page and
Today once, and is then asked, one kind at a time, to send events one after another for `--seconds`
(at most `--max-events` each), every tab at once. A round trip is the time from sending the event
to the update that carries its result (the state the handler changes):

  floor   ShortcutsState.set_shortcuts_open(false): the app's handler that does nothing but set a
          flag (the "?" dialog stays closed): no database, a small substate. It is the framework's
          own cost per event (websocket, state lock and serialisation), which the others add to.
  move    PipelineState.move_card(card, stage, 0), the board's drop handler: a card of the tab's own
          rep goes back and forth between its stage and the next open one (each tab its own card,
          so no two moves race); the reply must show the card in the new column. The board shows a
          move at once and writes it behind (state/pipeline._write_move), so a second row, `saved`,
          times the same moves until the update that shows the card written (no longer marked as
          saving); a tab sends its next move only then, as a person drags a card once it has
          landed. Afterwards every saved move is checked against the database: one stage change
          each, and the lead in the stage the last move left it.
  search  LeadsState.set_search(term), the Leads page's search box (terms rotate).
  today   DashboardState.load, Today's page load (action queue and pipeline health).

Against a running app (loopback only):
    python scripts/benchmark_events.py --url http://127.0.0.1:3000 [--database-url URL to verify moves]
Or it starts the app itself on a database (the tables' owner's URL), once per configuration:
`--workers 1` (no Redis: one granian worker, state in memory, as scripts/start.sh) and `--workers 3`
(three web workers on Redis, through scripts/serve.sh; no job worker, so nothing else runs):
    python scripts/benchmark_events.py --database-url postgresql://postgres@127.0.0.1:5432/crm_copy \\
        --workers 1 3 --port 3000 --redis-url redis://127.0.0.1:6379/7
The first start on a port builds the frontend (a few minutes, once per code version and port).
It prints a table per configuration, the move's p95 over the floor's at each concurrency, and (both
configurations) events/s with 3 workers over 1. It is a benchmark script: no assertion on time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmark_memory import Client, helper_processes, loopback, sign_in, worker_processes  # noqa: E402

KINDS = ("floor", "move", "search", "today")
REPS = ["riley@demo.crm", "sam@demo.crm", "priya@demo.crm", "diego@demo.crm", "hannah@demo.crm",
        "tom@demo.crm"]
SEARCH_TERMS = ["smith", "john", "lee", "garcia", "brown", "miller"]
OPEN_STAGES = ("new", "contacted", "qualified", "proposal", "negotiation")


def states() -> dict[str, str]:
    from crm_app.state.auth import SignInState
    from crm_app.state.dashboard import DashboardState
    from crm_app.state.leads import LeadsState
    from crm_app.state.pipeline import PipelineState
    from crm_app.state.search import ShortcutsState

    return {"sign_in": SignInState.get_full_name(), "today": DashboardState.get_full_name(),
            "leads": LeadsState.get_full_name(), "pipeline": PipelineState.get_full_name(),
            "floor": ShortcutsState.get_full_name()}


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def var(update: dict, state: str, name: str):
    """(True, value) when the update's delta sets `state`.`name`."""
    part = (update.get("delta") or {}).get(state) or {}
    key = name + "_rx_state_"
    return (key in part, part.get(key))


def board(update: dict, state: str) -> list[dict] | None:
    """The board's columns an update sends (one var per column, state/pipeline.PipelineState._show;
    an older app sent them all as `columns`), or None when it sends none."""
    part = (update.get("delta") or {}).get(state) or {}
    if "columns_rx_state_" in part:
        return part["columns_rx_state_"]
    columns = [value for key, value in part.items() if key.startswith("column_")]
    return columns or None


def failure(update: dict) -> str | None:
    """A handler's exception or refusal shown as a toast / error (the page would show it)."""
    for event in update.get("events") or []:
        blob = str(event.get("payload", ""))
        if "backend_error" in blob or "An error occurred" in blob or "toast.error" in blob \
                or "Move not saved" in blob or "no longer on this board" in blob:
            return blob[:200]
    return None


@dataclass
class Tab:
    """One signed-in tab: its socket, whose it is, and the card it moves."""

    client: Client
    email: str
    card_id: int = 0
    card_name: str = ""
    home: str = ""
    away: str = ""
    at: str = ""  # the stage the card is in, as this tab last saw it
    moves: int = 0  # moves acknowledged (the card shown in its new column, and written)
    turn: int = 0
    saved_ms: float = math.nan  # the last move's time until the update that shows it written

    def drain(self) -> None:
        while not self.client.queue.empty():
            self.client.queue.get_nowait()

    async def send(self, route: str, name: str, payload: dict) -> None:
        self.drain()  # a late reply of an earlier event must not end this one
        self.client.route = route
        await self.client.emit(name, payload)


@dataclass
class Cell:
    kind: str
    clients: int
    times_ms: list[float] = field(default_factory=list)
    saved_ms: list[float] = field(default_factory=list)  # moves: until written
    # Each tab's first event of the cell goes out with every other tab's at the same instant: the
    # events after it are the steady state. With few events per tab (moves: ~5 in 15 s at 50 tabs)
    # the opening burst is a fifth of the samples and sets the p95; with many (the floor) it is ~1%.
    steady_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    server_cpu: float = math.nan
    client_cpu: float = math.nan
    load: float = math.nan

    def row(self, kind: str | None = None, t: list[float] | None = None) -> str:
        kind, t = kind or self.kind, self.times_ms if t is None else t
        rate = len(t) / self.wall if self.wall else math.nan
        return (f"| {self.clients:>3} | {kind:<6} | {len(t):>5} | {pct(t, 50):>8.1f} | {pct(t, 95):>8.1f} "
                f"| {pct(t, 99):>8.1f} | {max(t) if t else math.nan:>8.1f} | {rate:>8.1f} | {len(self.errors):>3} "
                f"| {self.server_cpu:>5.0f}% | {self.client_cpu:>4.0f}% | {self.load:>5.1f} |")


HEADER = ("| clients | event | n | p50 ms | p95 ms | p99 ms | max ms | events/s | errors | server CPU | client CPU | load |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


class Bench:
    def __init__(self, base: str, port: int, names: dict[str, str], args):
        self.base, self.port, self.names, self.args = base, port, names, args
        self.tabs: list[Tab] = []

    # Setting up the tabs --------------------------------------------------------------------------
    async def open_tabs(self, count: int) -> None:
        users = [u.strip() for u in self.args.users.split(",") if u.strip()]
        semaphore = asyncio.Semaphore(10)
        timeout = self.args.timeout

        async def one(i: int) -> Tab:
            email = users[i % len(users)]
            async with semaphore, httpx.AsyncClient(timeout=timeout) as http:
                cookie = await sign_in(self.base, http, email, self.args.password, self.names["sign_in"], timeout)
                client = Client(self.base, "/pipeline", cookie=cookie)
                await client.open(timeout)  # hydrate + the board's on_load
                columns = await client.wait_for(
                    lambda u: var(u, self.names["pipeline"], "ready")[1] is True
                    and board(u, self.names["pipeline"]), timeout)
                return Tab(client, email), columns

        opened = await asyncio.gather(*(one(i) for i in range(count)))
        # Each tab of a rep takes a different card from the board (all tabs saw the same board: no move
        # has been sent yet), in the board's order, from the open columns.
        per_user = {}
        for tab, columns in opened:
            k = per_user.setdefault(tab.email, itertools.count())
            cards = [(c, col["stage"]) for col in columns if col["stage"] in OPEN_STAGES for c in col["cards"]]
            card, stage = cards[next(k)]
            tab.card_id, tab.card_name, tab.home = int(card["id"]), card["name"], stage
            i = OPEN_STAGES.index(stage)
            tab.away = OPEN_STAGES[i + 1] if i + 1 < len(OPEN_STAGES) else OPEN_STAGES[i - 1]
            tab.at = stage
            self.tabs.append(tab)
        # Each page once, as a user would have opened it, before anything is measured.
        for kind in ("search", "today"):
            await asyncio.gather(*(self.one_event(tab, kind) for tab in self.tabs))

    async def close(self) -> None:
        await asyncio.gather(*(tab.client.close() for tab in self.tabs))

    # One event ---------------------------------------------------------------------------------
    async def one_event(self, tab: Tab, kind: str) -> tuple[float, str | None]:
        n, timeout = self.names, self.args.timeout
        tab.turn += 1
        if kind == "floor":
            state, route, handler, payload, done = n["floor"], "/pipeline", "set_shortcuts_open", {"value": False}, \
                "shortcuts_open"
        elif kind == "move":
            to = tab.away if tab.at == tab.home else tab.home
            state, route, handler, done = n["pipeline"], "/pipeline", "move_card", None
            payload = {"card_id": str(tab.card_id), "to_column": to, "to_index": 0}
        elif kind == "search":
            term = SEARCH_TERMS[tab.turn % len(SEARCH_TERMS)]
            state, route, handler, payload, done = n["leads"], "/leads", "set_search", {"value": term}, "rows"
        else:
            state, route, handler, payload, done = n["today"], "/", "load", {}, "loaded"
        started = time.perf_counter()
        await tab.send(route, f"{state}.{handler}", payload)
        problem: list[str] = []

        def finished(update):
            bad = failure(update)
            if bad:
                problem.append(bad)
                return True
            return (board(update, state) is not None if done is None else var(update, state, done)[0]) and update

        update = await tab.client.wait_for(finished, timeout)
        elapsed = (time.perf_counter() - started) * 1000
        if problem:
            return elapsed, problem[0]
        if kind == "move":
            def shown(update) -> dict | None:
                columns = board(update, state) or []
                return next((c for col in columns if col["stage"] == to for c in col["cards"]
                             if int(c["id"]) == tab.card_id), None)

            card = shown(update)
            if card is None:
                return elapsed, f"card {tab.card_id} not shown in {to} after the move"
            if card.get("saving"):  # shown at once, written behind: wait for the update saying so

                def written(update):
                    bad = failure(update)
                    if bad:
                        problem.append(bad)
                        return True
                    card = shown(update)
                    return card is not None and not card.get("saving")

                await tab.client.wait_for(written, timeout)
                if problem:
                    return elapsed, problem[0]
            tab.saved_ms = (time.perf_counter() - started) * 1000
            tab.at, tab.moves = to, tab.moves + 1
        return elapsed, None

    # One cell: `clients` tabs sending `kind` for the duration -------------------------------------
    async def cell(self, kind: str, clients: int) -> Cell:
        cell, tabs = Cell(kind, clients), self.tabs[:clients]
        if self.args.warmup:
            await asyncio.gather(*(self.one_event(tab, kind) for tab in tabs for _ in range(1)))
        # The web workers and the move writers they spawned (a writer spawned during the cell is missed).
        procs = worker_processes(self.port)
        procs += helper_processes(procs)
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        own0 = sum(os.times()[:2])
        started = time.perf_counter()
        stop_at = started + self.args.seconds

        async def run(tab: Tab):
            for turn in range(self.args.max_events):
                if time.perf_counter() >= stop_at:
                    return
                try:
                    elapsed, error = await self.one_event(tab, kind)
                except (TimeoutError, asyncio.TimeoutError):
                    cell.errors.append(f"timeout after {self.args.timeout:.0f} s")
                    continue
                if error:
                    cell.errors.append(error)
                else:
                    cell.times_ms.append(elapsed)
                    if turn:
                        cell.steady_ms.append(elapsed)
                    if kind == "move":
                        cell.saved_ms.append(tab.saved_ms)

        await asyncio.gather(*(run(tab) for tab in tabs))
        cell.wall = time.perf_counter() - started
        cell.server_cpu = 100 * (sum(sum(p.cpu_times()[:2]) for p in procs) - cpu0) / cell.wall
        cell.client_cpu = 100 * (sum(os.times()[:2]) - own0) / cell.wall
        cell.load = os.getloadavg()[0]
        return cell


def verify_moves(database_url: str, tabs: list[Tab], since: datetime) -> str:
    """Every acknowledged move is a stage change in the database, and each card is where its last
    move left it."""
    from sqlalchemy import bindparam, text

    from crm_app.db.engine import make_engine

    engine = make_engine(database_url)
    ids = [tab.card_id for tab in tabs if tab.card_id]
    try:
        with engine.connect() as connection:
            changes = dict(connection.execute(text(
                "SELECT lead_id, count(*) FROM stage_changes WHERE lead_id IN :ids AND changed_at >= :since "
                "GROUP BY lead_id").bindparams(bindparam("ids", expanding=True)), {"ids": ids, "since": since}).all())
            stages = dict(connection.execute(text("SELECT id, stage FROM leads WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)), {"ids": ids}).all())
    finally:
        engine.dispose()
    sent = sum(tab.moves for tab in tabs)
    stored = sum(changes.values())
    wrong = [tab.card_id for tab in tabs if changes.get(tab.card_id, 0) != tab.moves or stages.get(tab.card_id) != tab.at]
    return (f"moves acknowledged {sent}, stage changes stored {stored}; leads whose changes or stage differ: "
            f"{len(wrong)}" + (f" e.g. {wrong[:5]}" if wrong else " (every move persisted)"))


async def measure(base: str, port: int, args, label: str) -> dict:
    names = states()
    bench = Bench(base, port, names, args)
    since = datetime.now(timezone.utc)
    started = time.perf_counter()
    await bench.open_tabs(max(args.clients))
    print(f"\n## {label}\n{len(bench.tabs)} tabs signed in and on the board in {time.perf_counter() - started:.0f} s "
          f"(reps {sorted({t.email.split('@')[0] for t in bench.tabs})}); {args.seconds:.0f} s per cell, "
          f"load {os.getloadavg()[0]:.1f}\n\n{HEADER}", flush=True)
    cells = {}
    try:
        for clients in args.clients:
            for kind in args.kinds:
                cell = await bench.cell(kind, clients)
                cells[(clients, kind)] = cell
                print(cell.row(), flush=True)
                if kind == "move":
                    print(cell.row("saved", cell.saved_ms), flush=True)
                for error in sorted(set(cell.errors))[:3]:
                    print(f"|     | error: {error} |", flush=True)
    finally:
        await bench.close()
    if "move" in args.kinds:
        for clients in args.clients:
            move, floor = cells.get((clients, "move")), cells.get((clients, "floor"))
            if move and floor and move.times_ms and floor.times_ms:
                ratio = pct(move.times_ms, 95) / pct(floor.times_ms, 95)
                print(f"{clients} clients: move p95 {pct(move.times_ms, 95):.1f} ms = {ratio:.1f}x the floor's "
                      f"p95 {pct(floor.times_ms, 95):.1f} ms (goal <= 2x); saved p95 {pct(move.saved_ms, 95):.1f} ms "
                      f"= {pct(move.saved_ms, 95) / pct(floor.times_ms, 95):.1f}x")
                if move.steady_ms and floor.steady_ms:
                    print(f"{clients} clients, after each tab's first event (the opening burst of {clients} at "
                          f"once left out): move p95 {pct(move.steady_ms, 95):.1f} ms = "
                          f"{pct(move.steady_ms, 95) / pct(floor.steady_ms, 95):.1f}x the floor's p95 "
                          f"{pct(floor.steady_ms, 95):.1f} ms (n {len(move.steady_ms)} / {len(floor.steady_ms)})")
        if args.database_url:
            print(verify_moves(args.database_url, bench.tabs, since), flush=True)
    return cells


# Starting the app ---------------------------------------------------------------------------------
def start_app(args, workers: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": args.database_url, "CRM_PORT": str(args.port), "CRM_JOB_WORKERS": "0",
           "CRM_SECRET_KEY": os.environ.get("CRM_SECRET_KEY") or secrets.token_hex(32)}
    env.pop("REFLEX_REDIS_URL", None)
    env.pop("GRANIAN_WORKERS", None)
    if workers == 1:  # as scripts/start.sh serves, without the demo setup: state in the worker's memory
        command = ["bash", "-c", 'source scripts/env.sh && exec python scripts/supervise.py --port "$CRM_PORT"']
    else:
        env.update(REFLEX_REDIS_URL=args.redis_url, CRM_WEB_WORKERS=str(workers))
        command = ["bash", "scripts/serve.sh"]
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    log = open(args.log, "a")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the app exited ({proc.returncode}); see {args.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=2) as response:
                if response.status == 200 and len(worker_processes(args.port)) >= workers:
                    return proc
        except OSError:
            pass
        time.sleep(1)
    stop_app(proc)
    sys.exit(f"the app did not answer on port {args.port} within {args.start_timeout:.0f} s; see {args.log}")


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--url", help="a running app (loopback only); else it is started on --database-url")
    parser.add_argument("--database-url", help="the tables' owner's URL: the app to start (without --url), "
                                               "and where moves are checked")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3],
                        help="configurations to start: 1 (no Redis) and/or N web workers on Redis (default 1 3)")
    parser.add_argument("--port", type=int, default=3000, help="where the started app listens")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="Redis for several workers")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seconds", type=float, default=15.0, help="per cell (clients x event kind)")
    parser.add_argument("--max-events", type=int, default=1000, help="per tab per cell")
    parser.add_argument("--warmup", type=int, default=1, choices=(0, 1), help="an unrecorded event per tab first")
    parser.add_argument("--users", default=",".join(REPS), help="comma-separated emails, round robin over tabs")
    parser.add_argument("--password", default="demo-password")
    parser.add_argument("--timeout", type=float, default=120.0, help="per event, s")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="for a started app (a first build)")
    parser.add_argument("--log", default=str(ROOT / ".web" / "benchmark-events-app.log"), help="the started app's output")
    args = parser.parse_args(argv)
    args.clients = sorted(set(args.clients))

    print(f"benchmark_events {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.url:
        base, port = loopback(args.url)
        asyncio.run(measure(base, port, args, f"{base} ({len(worker_processes(port))} web worker process(es))"))
        return 0
    if not args.database_url:
        parser.error("give --url (a running app) or --database-url (to start one)")
    results = {}
    for workers in args.workers:
        proc = start_app(args, workers)
        try:
            label = "1 web worker, state in memory" if workers == 1 else f"{workers} web workers on Redis"
            results[workers] = asyncio.run(measure(f"http://127.0.0.1:{args.port}", args.port, args, label))
        finally:
            stop_app(proc)
    if len(results) > 1:
        one, many = min(results), max(results)
        print(f"\n## events/s, {many} workers on Redis / {one} worker (goal >= 2x)")
        for (clients, kind), cell in results[many].items():
            base_cell = results[one].get((clients, kind))
            if base_cell and base_cell.times_ms and cell.wall and base_cell.wall:
                ratio = (len(cell.times_ms) / cell.wall) / (len(base_cell.times_ms) / base_cell.wall)
                print(f"{clients:>3} clients {kind:<6} {len(base_cell.times_ms) / base_cell.wall:8.1f} -> "
                      f"{len(cell.times_ms) / cell.wall:8.1f} events/s ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
