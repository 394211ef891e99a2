"""Caches a member cannot push other members' entries out of.

A cache that evicts in arrival order over all peers lets one member, by sending many entries, evict the
honest ones before they are used (the review filled 256-entry caches of masked inputs that way). Here
every entry is charged to the member that authored it (the authenticated sender of its envelope), each
member has its own bound, and making room only ever evicts that member's own oldest entries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class AuthorCache(Generic[K, V]):
    """A map of key -> value in which each value is charged to an author, `per_author` entries at most.

    The whole cache holds at most `per_author` x (number of authors) entries; with authors being the
    genesis members that is the bound on memory (entries are bounded in size by the caller).
    """

    def __init__(self, per_author: int) -> None:
        assert per_author > 0
        self.per_author = per_author
        self._values: dict[K, V] = {}
        self._by_author: dict[int, OrderedDict[K, None]] = {}
        self._author_of: dict[K, int] = {}
        self.evicted = 0

    def put(self, author: int, key: K, value: V) -> None:
        """Keep `value` under `key`, evicting `author`'s own oldest entry if it is at its bound."""
        if key in self._values:
            return
        own = self._by_author.setdefault(author, OrderedDict())
        while len(own) >= self.per_author:
            oldest, _ = own.popitem(last=False)
            del self._values[oldest], self._author_of[oldest]
            self.evicted += 1
        own[key] = None
        self._values[key] = value
        self._author_of[key] = author

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._values.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[K]:
        return iter(self._values)

    def pop(self, key: K) -> V | None:
        """Forget `key` (used, or no longer wanted)."""
        if key not in self._values:
            return None
        author = self._author_of.pop(key)
        del self._by_author[author][key]
        return self._values.pop(key)

    def count(self, author: int) -> int:
        return len(self._by_author.get(author, ()))
