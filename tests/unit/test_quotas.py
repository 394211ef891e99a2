"""AuthorCache: a flooding member evicts only its own entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.quotas import AuthorCache


def test_a_flooding_author_cannot_push_out_an_honest_entry() -> None:
    cache: AuthorCache[bytes, bytes] = AuthorCache(per_author=4)
    cache.put(0, b"honest", b"masked input of member 0")
    for i in range(10_000):
        cache.put(3, b"junk %d" % i, b"x")
    assert cache[b"honest"] == b"masked input of member 0"
    assert cache.count(3) == 4 and len(cache) == 5
    assert [key for key in cache if cache.get(key) == b"x"] == [b"junk %d" % i for i in range(9996, 10_000)]


def test_pop_frees_the_authors_room_and_a_repeated_key_is_kept_once() -> None:
    cache: AuthorCache[str, int] = AuthorCache(per_author=1)
    cache.put(1, "a", 1)
    cache.put(1, "a", 2)
    assert cache["a"] == 1 and cache.count(1) == 1
    assert cache.pop("a") == 1 and cache.pop("a") is None
    cache.put(1, "b", 3)
    assert "b" in cache and cache.evicted == 0


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=300), st.integers(1, 8))
def test_every_author_stays_within_its_bound(puts: list[tuple[int, int]], per_author: int) -> None:
    cache: AuthorCache[int, int] = AuthorCache(per_author)
    for author, key in puts:
        cache.put(author, key, author)
        assert all(cache.count(a) <= per_author for a in range(6))
        assert len(cache) == sum(cache.count(a) for a in range(6)) <= 6 * per_author
