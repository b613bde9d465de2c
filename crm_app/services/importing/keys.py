"""The first row each key (an email, an external id, a cell of a column that may be unique) was seen on,
in about 24 bytes a key instead of a Python dict's ~150.

Reading a file of a million rows, a dict of every email and external id (for "Same email as row 12")
and a set of every value of each column whose values all differ (is it an id column?) held several
hundred megabytes in the web worker. Here each key is a 128-bit BLAKE2 digest kept in sorted numpy
arrays (the first half to search, the second to tell two keys apart whose first halves agree) with the
row it was first seen on; the latest keys wait in a small dict and are merged in every MERGE_EVERY keys
(a merge is a linear pass, so a million keys cost ~20 merges). Two different keys are taken for the
same only if all 128 bits of their digests agree.
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

MERGE_EVERY = 65_536


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
