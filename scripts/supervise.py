"""Keep the app serving: build its frontend once per code version, run it, restart it when it dies.

    python scripts/supervise.py --port 3000        the app and its job worker(s) (what scripts/start.sh runs)
    python scripts/supervise.py -- COMMAND ...     any server command, restarted the same way (tests)

Beside the web server it runs CRM_JOB_WORKERS (default 1) job workers (`python -m crm_app.worker`:
training, bulk rescoring, the sweeps; the web server runs none of them), each restarted when it dies
on the same schedule as the server.

A start of `reflex run --env prod` spends most of its time compiling the pages and building the
frontend with npm, every time, although an unchanged version builds the same files (measured on this
machine: compile 22-30 s, npm build 54-57 s, then 4-5 s to boot the backend). So the frontend is
built once per version: the version is a hash of the app's source, its requirements, the port (it is
written into the bundle) and the REFLEX_* settings; `.web/crm-frontend.version` remembers what the
build in `.web/build/client` was made from. Every later start, and every restart, only boots the
backend, which serves that build on the same port (as `reflex run --env prod --single-port` does).

Importing the app costs about 6 CPU-seconds, so the supervisor imports it once and forks each server
from itself: a restart starts serving in about a second instead of paying the import again. The
server runs in a session of its own. When it exits unexpectedly, whatever is left of it is killed
and it starts again: at once the first time, then after 1, 2, 5, 10, 30 s while it keeps dying
within a minute of starting. Granian itself replaces a worker that dies (a fork of its main
process, about a second) and gives up when a worker dies again within seconds; then this
supervisor takes over. Ctrl-C or SIGTERM stops it: SIGTERM is passed on, the server stops
taking new connections, finishes the requests in flight and runs its shutdown (jobs it runs are
marked interrupted); after CRM_STOP_SECONDS it is killed. Then the embedded PostgreSQL (the
zero-setup default) is stopped unless another process still uses it; it outlives restarts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / ".web"
VERSION_FILE = WEB / "crm-frontend.version"
BUILD_INDEX = WEB / "build" / "client" / "index.html"
# What the frontend is built from: change any of these and it is built again.
SOURCES = ("crm_app", "assets", "rxconfig.py", "requirements.txt")
SOURCE_SUFFIXES = {".py", ".js", ".jsx", ".ts", ".tsx", ".css", ".json", ".svg", ".png", ".ico", ".txt"}
BACKEND_ONLY_SETTINGS = {"REFLEX_REDIS_URL", "REFLEX_OPLOCK_ENABLED", "REFLEX_OPLOCK_HOLD_TIME",
                         "REFLEX_REDIS_LOCK_EXPIRATION", "REFLEX_REDIS_TOKEN_EXPIRATION"}
RESTART_DELAYS = (0, 1, 2, 5, 10, 30)
HEALTHY_AFTER_SECONDS = 60


def say(message: str) -> None:
    print(f"==> [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def frontend_version(port: int) -> str:
    """A hash of everything the built frontend depends on."""
    digest = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES
                       and "__pycache__" not in p.parts) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    digest.update(f"port={port}\0".encode())
    # REFLEX_* settings, less those only the backend reads (Redis: serve.sh's several workers share
    # the build of start.sh's one).
    for key in sorted(k for k in os.environ if k.startswith("REFLEX_") and k not in BACKEND_ONLY_SETTINGS):
        digest.update(f"{key}={os.environ[key]}\0".encode())
    return digest.hexdigest()[:16]


def ensure_frontend(port: int) -> None:
    """Build the frontend unless the build on disk was made from this very version."""
    version = frontend_version(port)
    if BUILD_INDEX.exists() and VERSION_FILE.exists() and VERSION_FILE.read_text().strip() == version:
        say(f"Frontend of this version ({version}) already built: reusing it")
        return
    say(f"Building the frontend for version {version} (once per version: a few minutes the first time)")
    started = time.monotonic()
    VERSION_FILE.unlink(missing_ok=True)
    env = {**os.environ, "REFLEX_FRONTEND_PORT": str(port), "REFLEX_BACKEND_PORT": str(port)}
    subprocess.run([sys.executable, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--env", "prod"],
                   cwd=ROOT, env=env, check=True)
    VERSION_FILE.write_text(version + "\n")
    say(f"Frontend built in {time.monotonic() - started:.0f} s")


def prepare_server(port: int):
    """Set up this process to serve the app on `port` (what `reflex run --env prod --single-port`
    does, minus compiling and building) and import the app; returns a function that runs the server.
    Import costs about 6 CPU-seconds (15 s on a busy machine): a process prepared once forks every
    server it starts, so a restart does not pay it again."""
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import granian.server
    from reflex.utils import exec as reflex_exec
    from reflex.utils import prerequisites
    from reflex_base import constants
    from reflex_base.config import get_config
    from reflex_base.environment import environment

    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_COMPILE_CONTEXT.set(constants.CompileContext.RUN)
    environment.REFLEX_SKIP_COMPILE.set(True)
    config = get_config()
    config._set_persistent(frontend_port=port, backend_port=port)
    stop_seconds = int(os.environ.get("CRM_STOP_SECONDS", "30"))

    class RespawningServer(granian.server.Server):
        """Granian replacing a worker that dies (from its preloaded main process: about a second),
        and giving a stopping worker `stop_seconds` to finish its requests."""

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("respawn_failed_workers", True)
            kwargs.setdefault("workers_kill_timeout", stop_seconds)
            super().__init__(*args, **kwargs)

    granian.server.Server = RespawningServer  # reflex's runner looks it up when it starts
    prerequisites.get_app()  # the import, once

    def run() -> None:
        reflex_exec.run_backend_prod(config.backend_host, port, config.loglevel.subprocess_level(),
                                     mount_frontend_compiled_app=True)

    return run


def _die_with_parent() -> None:
    """In a child: receive SIGTERM when the supervisor dies (Linux), so a supervisor killed outright
    leaves no server behind holding the port; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass


class ForkedServer:
    """A server process forked from this (prepared) process, in a session of its own; the parts of
    subprocess.Popen the supervisor uses."""

    def __init__(self, run):
        sys.stdout.flush()
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the server
            code = 1
            try:
                os.setsid()
                _die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run()
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def stop_unused_embedded_database() -> None:
    """The zero-setup database outlives server restarts (a restart joins it); when the app stops for
    good, stop it too, unless another process (a command-line run) still uses it."""
    if os.environ.get("DATABASE_URL", "").strip():
        return
    sys.path.insert(0, str(ROOT))
    from crm_app.db.supervisor import stop_if_unused
    from crm_app.settings import settings

    try:
        if stop_if_unused(settings.data_dir / "pgdata"):
            say("Stopped the embedded PostgreSQL")
    except Exception as error:  # never fail a stop over it
        say(f"Could not stop the embedded PostgreSQL: {error}")


@dataclass
class Child:
    """One supervised process: how to start it, where it answers when ready (or None), and its run."""

    name: str
    start: Callable[[], object]
    ready_url: str | None = None
    process: object = None
    started: float = 0.0
    ready: bool = False
    crashes: int = 0
    restart_at: float = 0.0
    done: bool = False


class Supervisor:
    """Runs what each child's `start()` starts (a process with pid, poll, send_signal, returncode in a
    session of its own) until asked to stop, starting each again when it dies: the web server and the
    job workers, each on its own restart schedule."""

    def __init__(self, start, ready_url: str | None, stop_seconds: float, extra: Sequence[Child] = ()):
        self.children = [Child("The app", start, ready_url), *extra]
        self.stop_seconds = stop_seconds
        self.stopping = False
        self.stop_requested_at = 0.0

    @property
    def process(self):  # the first child's (the web server's) current process
        return self.children[0].process

    def _on_signal(self, signum, _frame) -> None:
        if self.stopping:  # asked twice: stop now
            for child in self.children:
                self._kill_group(child, signal.SIGKILL)
            return
        self.stopping, self.stop_requested_at = True, time.monotonic()
        say(f"{signal.Signals(signum).name}: stopping the app (requests in flight finish; "
            f"killed after {self.stop_seconds:.0f} s)")
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)

    @staticmethod
    def _kill_group(child: Child, sig: int) -> None:
        if child.process is not None:
            try:
                os.killpg(child.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _check_ready(child: Child) -> None:
        """Log once how long the child took to answer (what a restart costs)."""
        if child.ready or not child.ready_url:
            return
        try:
            with urllib.request.urlopen(child.ready_url, timeout=0.5) as response:
                if response.status < 500:
                    child.ready = True
                    say(f"Serving after {time.monotonic() - child.started:.1f} s (pid {child.process.pid})")
        except OSError:
            pass

    def _step(self, child: Child) -> None:
        now = time.monotonic()
        if child.done:
            return
        if child.process is None:
            if not self.stopping and now >= child.restart_at:
                child.started, child.ready = now, False
                child.process = child.start()
                if not child.ready_url:
                    say(f"{child.name} started (pid {child.process.pid})")
            elif self.stopping:
                child.done = True
            return
        if child.process.poll() is None:
            self._check_ready(child)
            if self.stopping and now - self.stop_requested_at > self.stop_seconds:
                say(f"{child.name} did not stop in time: killing it")
                self._kill_group(child, signal.SIGKILL)
            return
        code = child.process.returncode
        self._kill_group(child, signal.SIGKILL)  # workers a dead main process left behind hold the port
        child.process = None
        if self.stopping:
            say(f"{child.name} stopped (exit code {code})")
            child.done = True
            return
        ran = now - child.started
        child.crashes = 0 if ran > HEALTHY_AFTER_SECONDS else child.crashes + 1
        delay = RESTART_DELAYS[min(max(child.crashes - 1, 0), len(RESTART_DELAYS) - 1)]
        say(f"{child.name} exited unexpectedly (exit code {code}) after {ran:.0f} s: restarting"
            + (f" in {delay} s" if delay else ""))
        child.restart_at = now + delay

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not all(child.done for child in self.children):
            for child in self.children:
                self._step(child)
            time.sleep(0.1)
        stop_unused_embedded_database()
        return 0


def job_workers(count: int) -> list[Child]:
    """`count` job workers (`python -m crm_app.worker`, crm_app/worker.py): they run training, bulk
    rescoring and the sweeps, which no web worker does."""
    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "crm_app.worker"], cwd=ROOT, start_new_session=True,
                                preexec_fn=_die_with_parent)

    return [Child(f"Job worker {n + 1}", start) for n in range(count)]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="scripts/supervise.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("CRM_PORT", "3000")))
    parser.add_argument("--job-workers", type=int, default=int(os.environ.get("CRM_JOB_WORKERS", "1")),
                        help="job worker processes beside the web server (default 1; CRM_JOB_WORKERS)")
    parser.add_argument("--serve", action="store_true",
                        help="(internal) run one server process, unsupervised")
    args = parser.parse_args(argv)
    stop_seconds = float(os.environ.get("CRM_STOP_SECONDS", "30"))
    if command:
        return Supervisor(lambda: subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                                                   preexec_fn=_die_with_parent), None, stop_seconds).run()
    if not args.serve:
        ensure_frontend(args.port)
    # A fresh start forgets the tabs' saved state (as `reflex run` does); a restart keeps it, so open
    # tabs carry on where they were.
    for saved in (ROOT / ".states").glob("*"):
        saved.unlink(missing_ok=True)
    started = time.monotonic()
    run_server = prepare_server(args.port)
    if args.serve:
        run_server()
        return 0
    say(f"Loaded the app in {time.monotonic() - started:.1f} s; starting it on http://localhost:{args.port}")
    ready_url = f"http://127.0.0.1:{args.port}/ping"
    return Supervisor(lambda: ForkedServer(run_server), ready_url, stop_seconds,
                      extra=job_workers(args.job_workers)).run()


if __name__ == "__main__":
    sys.exit(main())
