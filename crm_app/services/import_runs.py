"""Which user's import is running in which process, so an import cut off by its web process dying
shows as interrupted instead of running forever.

An import runs inside a web worker and stores every row or none (one transaction; the database rolls
it back when the worker dies). What was lost is the page's knowledge of it: the tab's saved state
could still say "importing" after the restart and refuse to start another. A small marker file beside
the uploaded files names the process running each user's import; when that process is gone, the
import page says the import was interrupted and a new one can start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from crm_app.settings import settings

INTERRUPTED = ("The import was interrupted: the app stopped while it ran. Nothing was imported (an import "
               "stores every row or none); import the file again.")


def _marker(user_id: int) -> Path:
    folder = settings.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"running-{int(user_id)}.json"


def note_started(user_id: int, file_name: str) -> None:
    me = psutil.Process()
    _marker(user_id).write_text(json.dumps({"pid": me.pid, "since": me.create_time(), "file": file_name}))


def note_finished(user_id: int) -> None:
    _marker(user_id).unlink(missing_ok=True)


def _alive(record: dict) -> bool:
    try:
        process = psutil.Process(int(record["pid"]))
        same_process = abs(process.create_time() - float(record["since"])) < 1  # not a reused pid
        return same_process and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def running(user_id: int) -> bool:
    """Is an import of this user running in a live process?"""
    try:
        return _alive(json.loads(_marker(user_id).read_text()))
    except (OSError, ValueError):
        return False


def interrupted(user_id: int) -> str | None:
    """The message to show when this user's last import died with its process (once), else None."""
    marker = _marker(user_id)
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if _alive(record):
        return None
    marker.unlink(missing_ok=True)
    name = str(record.get("file") or "the file")
    return INTERRUPTED.replace("The import was", f"The import of {name} was")
