"""Keys of a large file kept compactly: the first row of each email and external id (`FirstRows`, about
24 bytes a key instead of a Python dict's ~150), and whether a column's values all differ
(`AllDifferent`, 8 bytes a value instead of a set's ~100).

Reading a file of a million rows, a dict of every email and external id (for "Same email as row 12")
and a set of every value of each column whose values all differed (is it an id column?) held several
hundred megabytes in the web worker. `FirstRows` keeps each key as a 128-bit BLAKE2 digest in sorted
numpy arrays (the first half to search, the second to tell apart two keys whose first halves agree)
with the row it was first seen on; the latest keys wait in a small dict and are merged in every
MERGE_EVERY keys (a merge is a linear pass, so a million keys cost ~20 merges). Two different keys are
taken for the same only if all 128 bits of their digests agree. `AllDifferent` needs no rows, only
whether a repeat exists: 64-bit digests appended in numpy arrays, sorted and compared now and then;
two different values are taken for a repeat only if their 64-bit digests agree (about 3 in 10^8 at a
million values, and then a unique column is merely not guessed as an id).
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

MERGE_EVERY = 65_536


def _digest64(key: str) -> int:
    return int.from_bytes(blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little",
                          signed=True)


class AllDifferent:
    """`add_many(values)`: whether every value added so far differs from the others (checked when
    MERGE_EVERY are pending, and by `holds()`)."""

    def __init__(self, merge_every: int | None = None) -> None:
        self._merge_every = merge_every or MERGE_EVERY
        self._sorted = np.empty(0, np.int64)
        self._pending: list[np.ndarray] = []
        self._count = 0
        self._holds = True

    def add_many(self, values: list[str]) -> bool:
        if self._holds and values:
            self._pending.append(np.fromiter((_digest64(v) for v in values), np.int64, len(values)))
            self._count += len(values)
            if self._count >= self._merge_every:
                self._check()
        return self._holds

    def holds(self) -> bool:
        if self._holds and self._pending:
            self._check()
        return self._holds

    def _check(self) -> None:
        merged = np.concatenate((self._sorted, *self._pending))
        merged.sort()
        self._pending, self._count = [], 0
        if bool((merged[1:] == merged[:-1]).any()):
            self._holds, self._sorted = False, np.empty(0, np.int64)
        else:
            self._sorted = merged


def _digest(key: str) -> tuple[int, int]:
    raw = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(raw[:8], "little", signed=True), int.from_bytes(raw[8:], "little", signed=True)


class FirstRows:
    """`first(key, row)`: the row `key` was first seen on (this row when it is new); `add(key)`: whether
    `key` is new."""

    def __init__(self, merge_every: int | None = None) -> None:
        self._merge_every = merge_every or MERGE_EVERY
        self._high = np.empty(0, np.int64)  # sorted
        self._low = np.empty(0, np.int64)
        self._rows = np.empty(0, np.int64)
        self._recent: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self._high) + len(self._recent)

    def add(self, key: str) -> bool:
        """Note `key`; whether it is new."""
        fresh = len(self) + 1
        return self.first(key, fresh) == fresh

    def first(self, key: str, row: int) -> int:
        digest = _digest(key)
        earlier = self._recent.get(digest)
        if earlier is not None:
            return earlier
        high, low = digest
        at = int(np.searchsorted(self._high, high))
        while at < len(self._high) and self._high[at] == high:
            if self._low[at] == low:
                return int(self._rows[at])
            at += 1
        self._recent[digest] = row
        if len(self._recent) >= self._merge_every:
            self._merge()
        return row

    def _merge(self) -> None:
        recent = np.array([(h, lo, r) for (h, lo), r in self._recent.items()], dtype=np.int64).reshape(-1, 3)
        high = np.concatenate((self._high, recent[:, 0]))
        order = np.argsort(high, kind="stable")
        self._high = high[order]
        self._low = np.concatenate((self._low, recent[:, 1]))[order]
        self._rows = np.concatenate((self._rows, recent[:, 2]))[order]
        self._recent = {}
