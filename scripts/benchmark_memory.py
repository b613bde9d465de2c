#!/usr/bin/env python3
"""Bounded memory: the RSS of the web worker after rounds of real sign-ins (issue #15, item 5).

Targets a running app (`--url`, loopback only; start it with `bash scripts/start.sh`). Each sign-in
is what a browser does:
  1. a websocket on /sign-in (hydrate + SignInState.load), then SignInState.submit with the email and
     password; the reply carries the one-time ticket in the hand-off script;
  2. POST /auth/session with the ticket: the HttpOnly session cookie comes back;
  3. a new websocket carrying the cookie opens Today ("/": hydrate + DashboardState.load) and waits
     until the page's state arrives, then closes.
`--clients` sign-ins run at once (50 concurrent clients). After each round of `--sign-ins` the
script prints the RSS of the granian worker(s) serving the port, so a second round shows whether
per-tab state piles up (it should stay flat: see README, CRM_STATE_EXPIRY_SECONDS).

    python scripts/benchmark_memory.py --url http://127.0.0.1:3000 --sign-ins 1000 --rounds 2

The client is the app's own protocol written out (Socket.IO v5 over Engine.IO v4 on /_event, see
reflex/app.py EventNamespace) on wsproto, a sans-IO websocket library already in the requirements'
tree: no Socket.IO client package (python-socketio's needs aiohttp) is installed for a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import socket
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import (  # noqa: E402
    AcceptConnection, CloseConnection, Message, Ping, RejectConnection, Request, TextMessage)

ROOT_STATE = "reflex___state____state"
EVENT_PATH = "/_event"
TICKET = re.compile(r'ticket:\s*"([^"]+)"')
DEMO_USERS = ["riley@demo.crm", "sam@demo.crm", "priya@demo.crm", "diego@demo.crm", "hannah@demo.crm",
              "tom@demo.crm", "maya@demo.crm"]


def state_names() -> tuple[str, str]:
    from crm_app.state.auth import SignInState
    from crm_app.state.dashboard import DashboardState

    return SignInState.get_full_name(), DashboardState.get_full_name()


def loopback(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    host, port = parts.hostname or "", parts.port or 80
    addrs = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    if not addrs or any(not ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        sys.exit(f"refusing non-loopback target {host!r}")
    return f"{parts.scheme}://{parts.netloc}", port


def worker_processes(port: int) -> list[psutil.Process]:
    """The granian worker process(es) serving the port (the workers hold the states): with one worker,
    the process listening and its children; with several, every process listening (each worker
    binds the port itself)."""
    owners = {conn.pid for conn in psutil.net_connections(kind="tcp")
              if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid}
    if not owners:
        sys.exit(f"no process listens on port {port}")
    found: dict[int, psutil.Process] = {}
    for pid in sorted(owners):
        owner = psutil.Process(pid)
        # (Not the processes a worker spawns itself, such as its move writers: `helper_processes`.)
        children = [c for c in owner.children(recursive=True)
                    if ("python" in (c.name() or "").lower() or "granian" in " ".join(c.cmdline()).lower())
                    and "multiprocessing" not in " ".join(c.cmdline())]
        for process in children or [owner]:
            found[process.pid] = process
    return list(found.values())


def helper_processes(workers: list[psutil.Process]) -> list[psutil.Process]:
    """The processes the web workers spawned themselves (crm_app/move_writer.py's writers)."""
    return [c for w in workers for c in w.children(recursive=True) if "multiprocessing" in " ".join(c.cmdline())]


def rss_mb(procs: list[psutil.Process]) -> list[float]:
    return [round(p.memory_info().rss / 2**20, 1) for p in procs]


class Client:
    """One browser tab's websocket: Engine.IO v4 framing, the Socket.IO namespace /_event."""

    def __init__(self, base: str, route: str, cookie: str | None = None):
        self.base, self.route, self.token, self.cookie = base, route, str(uuid.uuid4()), cookie
        self.queue: asyncio.Queue = asyncio.Queue()
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.reader = self.writer = self.pump = None
        self.text = ""

    def router_data(self) -> dict:
        return {"pathname": self.route, "asPath": self.route}

    async def _send(self, text: str) -> None:
        self.writer.write(self.ws.send(Message(data=text)))
        await self.writer.drain()

    async def _pump(self) -> None:
        """Reads frames: answers pings, queues Socket.IO events (dicts) and the namespace's connect."""
        while True:
            data = await self.reader.read(65536)
            if not data:
                self.queue.put_nowait({"__closed__": True})
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Ping):
                    self.writer.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.queue.put_nowait({"__closed__": True})
                    return
                elif isinstance(event, (AcceptConnection, RejectConnection)):
                    self.queue.put_nowait({"__accepted__": isinstance(event, AcceptConnection)})
                elif isinstance(event, TextMessage):
                    self.text += event.data
                    if not event.message_finished:
                        continue
                    packet, self.text = self.text, ""
                    if packet == "2":  # Engine.IO ping
                        await self._send("3")
                    elif packet.startswith("40" + EVENT_PATH):
                        self.queue.put_nowait({"__connected__": True})
                    elif packet.startswith("44" + EVENT_PATH):
                        self.queue.put_nowait({"__refused__": packet})
                    elif packet.startswith("42" + EVENT_PATH + ","):
                        name, *args = json.loads(packet[len("42" + EVENT_PATH) + 1:])
                        if name == "event" and args:
                            body = args[0]
                            self.queue.put_nowait(json.loads(body) if isinstance(body, str) else body)

    async def open(self, timeout: float) -> None:
        parts = urllib.parse.urlsplit(self.base)
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
        headers = [("Origin", self.base)] + ([("Cookie", self.cookie)] if self.cookie else [])
        self.writer.write(self.ws.send(Request(
            host=parts.netloc, target=f"{EVENT_PATH}/?token={self.token}&EIO=4&transport=websocket",
            extra_headers=headers)))
        await self.writer.drain()
        self.pump = asyncio.create_task(self._pump())
        await self.wait_for(lambda u: u.get("__accepted__"), timeout)  # a refused upgrade raises
        boot = {"event": {"name": f"{ROOT_STATE}.hydrate_and_load", "payload": {},
                          "router_data": self.router_data()}}
        await self._send("40" + EVENT_PATH + "," + json.dumps(boot))
        await self.wait_for(lambda u: u.get("__connected__"), timeout)

    async def emit(self, name: str, payload: dict) -> None:
        body = {"name": name, "payload": payload, "router_data": self.router_data()}
        await self._send("42" + EVENT_PATH + "," + json.dumps(["event", body]))

    async def wait_for(self, found, timeout: float):
        """The first update for which found(update) is truthy, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            update = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - time.monotonic()))
            if update.get("__closed__") or update.get("__refused__") or update.get("__accepted__") is False:
                raise ConnectionError(f"websocket ended: {update}")
            result = found(update)
            if result:
                return result

    async def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(self.ws.send(CloseConnection(code=1000)))
            await self.writer.drain()
        except Exception:
            pass
        if self.pump:
            self.pump.cancel()
        self.writer.close()


async def sign_in(base: str, http: httpx.AsyncClient, email: str, password: str, sign_in_state: str,
                  timeout: float) -> str:
    """The browser's sign-in (steps 1 and 2 above); returns the Cookie header a tab then carries."""
    form = Client(base, "/sign-in")
    try:
        await form.open(timeout)
        await form.emit(f"{sign_in_state}.submit", {"form": {"email": email, "password": password}})

        def ticket_in(update):
            for event in update.get("events") or []:
                match = TICKET.search(str(event.get("payload", "")))
                if match:
                    return match.group(1)
            return None

        ticket = await form.wait_for(ticket_in, timeout)
    finally:
        await form.close()
    response = await http.post(f"{base}/auth/session", json={"ticket": ticket}, headers={"Origin": base})
    if response.status_code != 204 or not response.cookies.get("crm_session"):
        raise RuntimeError(f"/auth/session answered {response.status_code} without a session cookie")
    return f"crm_session={response.cookies['crm_session']}"


async def sign_in_and_open_today(base: str, http: httpx.AsyncClient, email: str, password: str,
                                 sign_in_state: str, today_state: str, timeout: float) -> None:
    today = Client(base, "/", cookie=await sign_in(base, http, email, password, sign_in_state, timeout))
    try:
        await today.open(timeout)
        # Today is loaded when its state (DashboardState) says so; a redirect would mean no session.
        await today.wait_for(
            lambda u: (u.get("delta") or {}).get(today_state, {}).get("loaded_rx_state_") is True, timeout)
    finally:
        await today.close()


async def tabs_of_a_sign_in(base: str, cookie: str, today_state: str, timeout: float) -> None:
    """The two tabs a sign-in leaves (the sign-in page's, then Today's with the session cookie),
    without the password check: `--reuse-sessions`."""
    form = Client(base, "/sign-in")
    try:
        await form.open(timeout)
        await form.wait_for(
            lambda u: (u.get("delta") or {}).get(ROOT_STATE, {}).get("is_hydrated_rx_state_") is True, timeout)
    finally:
        await form.close()
    today = Client(base, "/", cookie=cookie)
    try:
        await today.open(timeout)
        await today.wait_for(
            lambda u: (u.get("delta") or {}).get(today_state, {}).get("loaded_rx_state_") is True, timeout)
    finally:
        await today.close()


async def one_round(base: str, n: int, clients: int, password: str, names: tuple[str, str],
                    timeout: float, cookies: list[str] | None = None) -> tuple[int, list[str], float]:
    semaphore, errors, done = asyncio.Semaphore(clients), [], 0
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout) as http:
        async def one(i: int):
            nonlocal done
            async with semaphore:
                http.cookies.clear()  # each sign-in keeps its own cookie
                try:
                    if cookies:
                        await tabs_of_a_sign_in(base, cookies[i % len(cookies)], names[1], timeout)
                    else:
                        await sign_in_and_open_today(base, http, DEMO_USERS[i % len(DEMO_USERS)], password,
                                                     *names, timeout=timeout)
                    done += 1
                except Exception as error:  # counted and shown; the round goes on
                    errors.append(repr(error)[:160])

        await asyncio.gather(*(one(i) for i in range(n)))
    return done, errors, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True,
                        help="the running app, e.g. http://127.0.0.1:3000 (loopback only)")
    parser.add_argument("--sign-ins", type=int, default=1000, help="sign-ins per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--password", default="demo-password", help="the demo accounts' password")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait after each round before reading RSS (lets expiry run)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per step, s")
    parser.add_argument("--reuse-sessions", action="store_true",
                        help="sign each demo user in once and open each sign-in's two tabs with that session: "
                             "the same tabs without a password check each (argon2 took ~3 s on a busy machine)")
    args = parser.parse_args(argv)

    base, port = loopback(args.url)
    names = state_names()
    procs = worker_processes(port)
    print(f"web worker pid(s) {[p.pid for p in procs]}; RSS at start {rss_mb(procs)} MB", flush=True)
    cookies = None
    if args.reuse_sessions:
        async def sign_in_everyone():
            async with httpx.AsyncClient(timeout=args.timeout) as http:
                signed = []
                for email in DEMO_USERS:
                    http.cookies.clear()
                    signed.append(await sign_in(base, http, email, args.password, names[0], args.timeout))
                return signed

        cookies = asyncio.run(sign_in_everyone())
        print(f"{len(cookies)} sessions signed in; each 'sign-in' below opens the sign-in page's tab and a "
              f"Today tab with one of them; RSS {rss_mb(procs)} MB", flush=True)
    for r in range(1, args.rounds + 1):
        done, errors, wall = asyncio.run(one_round(base, args.sign_ins, args.clients, args.password, names,
                                                   args.timeout, cookies))
        if args.settle:
            time.sleep(args.settle)
        print(f"round {r}: {done}/{args.sign_ins} sign-ins + Today loads with {args.clients} concurrent "
              f"clients in {wall:.0f} s; worker RSS {rss_mb(procs)} MB; errors {len(errors)}"
              + (f" e.g. {errors[:3]}" if errors else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
