"""Debugging only: what a web worker's memory holds, written to a file every so often.

Off unless CRM_MEMORY_REPORT names a file. Then each web worker appends to `<file>.<pid>`, every
CRM_MEMORY_REPORT_SECONDS (60): its RSS before and after handing freed memory back to the system
(glibc's malloc_trim: what it gives back was free already, the allocator's fragmentation, not
objects), the objects the garbage collector tracks per type and how that changed since the last
report, the tabs Reflex holds (states, locks, write queue, sockets) and this app's own per-tab
bookkeeping. With CRM_MEMORY_REPORT_FRAMES > 0 it also traces Python's allocations (tracemalloc,
that many frames; it slows every allocation, so measure time without it) and lists the lines whose
memory grew most since the last report.

Used to find what a second round of sign-ins kept (scripts/benchmark_memory.py, README "Benchmark").
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import logging
import os
import sys
import time

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _trim() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except OSError:
        return False


def _type_counts() -> collections.Counter:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def _tab_books(app) -> dict[str, int]:
    """Sizes of the per-tab dicts Reflex and this app keep."""
    books: dict[str, int] = {}
    manager = getattr(app, "_state_manager", None) or getattr(app, "state_manager", None)
    for name in ("states", "_token_last_touched", "_states_locks", "_write_queue", "_cached_states",
                 "_local_leases", "_lease_tasks"):
        value = getattr(manager, name, None)
        if hasattr(value, "__len__"):
            books[f"manager.{name}"] = len(value)
    namespace = getattr(app, "event_namespace", None)
    if namespace is not None:
        for name in ("_static_router_data", "_client_error_counts"):
            books[f"namespace.{name}"] = len(getattr(namespace, name, {}) or {})
        tokens = getattr(namespace, "_token_manager", None)
        for name in ("token_to_socket", "sid_to_token", "token_to_sid"):
            value = getattr(tokens, name, None)
            if hasattr(value, "__len__"):
                books[f"tokens.{name}"] = len(value)
    for module, names in (("crm_app.state.pipeline", ("_written", "_writing")),
                          ("crm_app.closed_tabs", ("_tabs",))):
        mod = sys.modules.get(module)
        for name in names:
            value = getattr(mod, name, None)
            if hasattr(value, "__len__"):
                books[f"{module.rsplit('.', 1)[-1]}.{name}"] = len(value)
    return books


async def report_memory(app) -> None:
    """Lifespan task: append a report to CRM_MEMORY_REPORT.<pid> every CRM_MEMORY_REPORT_SECONDS."""
    target = os.environ.get("CRM_MEMORY_REPORT", "")
    if not target:
        return
    import tracemalloc

    every = max(5.0, float(os.environ.get("CRM_MEMORY_REPORT_SECONDS", "60")))
    frames = int(os.environ.get("CRM_MEMORY_REPORT_FRAMES", "0"))
    if frames > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    path = f"{target}.{os.getpid()}"
    counts_before: collections.Counter = collections.Counter()
    snapshot_before = None
    while True:
        await asyncio.sleep(every)
        try:
            gc.collect()
            lines = [f"=== {time.strftime('%H:%M:%S')} pid {os.getpid()}"]
            rss = _rss_mb()
            trimmed = _trim()
            lines.append(f"rss {rss:.1f} MB; after malloc_trim {_rss_mb():.1f} MB ({trimmed})")
            lines.append("tabs: " + ", ".join(f"{k}={v}" for k, v in _tab_books(app).items()))
            counts = _type_counts()
            lines.append(f"gc objects {sum(counts.values()):,}; most common, and change since last report:")
            for name, n in counts.most_common(25):
                lines.append(f"  {n:>9,} {n - counts_before.get(name, 0):>+9,} {name}")
            grew = sorted(((n - counts_before.get(k, 0), k) for k, n in counts.items()), reverse=True)[:15]
            lines.append("grew most: " + ", ".join(f"{k} {d:+,}" for d, k in grew if d > 0))
            counts_before = counts
            if tracemalloc.is_tracing():
                current, peak = tracemalloc.get_traced_memory()
                lines.append(f"traced {current / 2**20:.1f} MB (peak {peak / 2**20:.1f} MB)")
                snapshot = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)])
                if snapshot_before is not None:
                    for stat in snapshot.compare_to(snapshot_before, "traceback")[:15]:
                        lines.append(f"  {stat.size_diff / 2**20:+8.2f} MB {stat.count_diff:+8,} blocks "
                                     f"(now {stat.size / 2**20:.2f} MB)")
                        lines.extend(f"      {frame}" for frame in stat.traceback.format()[-2 * frames:])
                else:
                    for stat in snapshot.statistics("traceback")[:15]:
                        lines.append(f"  {stat.size / 2**20:8.2f} MB {stat.count:8,} blocks")
                        lines.extend(f"      {frame}" for frame in stat.traceback.format()[-2 * frames:])
                snapshot_before = snapshot
            with open(path, "a") as f:
                f.write("\n".join(lines) + "\n")
        except Exception:  # a report must never stop the worker
            log.exception("memory report failed")
