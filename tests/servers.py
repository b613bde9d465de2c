"""Running a real server for tests: a free port, the process in its own group, waiting until it
answers, and stopping it (and everything it started) afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crm_app.settings import REPO_ROOT


def free_port() -> int:
    """A port nothing listens on: any the system gives, or the first free one of CRM_TEST_PORTS
    ("3160-3169") when several people's test runs share a machine and each keeps to its own ports."""
    wanted = os.environ.get("CRM_TEST_PORTS", "")
    first, _, last = wanted.partition("-")
    for port in range(int(first), int(last or first) + 1) if first.isdecimal() else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in CRM_TEST_PORTS={wanted}")


@contextmanager
def serve(command: list[str], *, env: dict[str, str], ready_url: str, log_path: Path, what: str,
          timeout: float) -> Iterator[subprocess.Popen]:
    """Run `command` until the block ends; enter once `ready_url` answers (the block gets the process).
    Fails with the log's tail if the process exits or does not answer within `timeout` seconds."""
    log_path.parent.mkdir(exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.flush()
                raise RuntimeError(f"{what} exited ({proc.returncode}); see {log_path}:\n"
                                   + log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer within {timeout:.0f} s; see {log_path}")
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
