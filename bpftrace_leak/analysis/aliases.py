"""Which of a merged slab cache's names an allocation belongs to.

SLUB merges caches of the same object size and compatible flags into one
struct kmem_cache, named after the first one created: the tracepoint names
all of them by it, so UNIX sockets come out as ``signal_cache`` on this
project's host, and DAMON regions as ``ftrace_event_field``. The struct
cannot tell its merged names apart (they are all the same cache), but the
allocating code usually can: its functions are named after their subsystem
(``unix_create1`` for the ``UNIX`` cache, ``damon_new_region`` for
``damon_region``). A group is named after the name whose words its stack's
functions carry most, and, on a tie, most completely; when no name's words
appear, or several names tie, the group says "one of" them.
"""

import re

from .symbols import base_name

__all__ = ["owner", "eliminate"]

#: words that say nothing of a subsystem
_GENERIC = frozenset({"cache", "cachep", "node", "nodes", "head", "struct", "info", "data", "entry", "obj",
                      "object", "objs", "kmem", "slab", "pool", "buf", "list", "item", "alloc", "table"})
#: a word keeps its digits: ``bind2`` is not ``bind`` (tcp_bind2_bucket vs tcp_bind_bucket)
_WORD = re.compile(r"[a-z][a-z0-9]*")


def _words(name: str) -> set[str]:
    return {w for w in _WORD.findall(name.lower()) if len(w) >= 3 and w not in _GENERIC}


def owner(cache: str, aliases, stack: list[str]) -> tuple[str | None, list[str]]:
    """(the name among ``cache`` and its merged ``aliases`` the allocation with
    ``stack`` belongs to, or None; the names it may belong to, best first).
    An unmerged cache is its own owner.

    Each name scores the letters of its words the stack's functions carry
    (longer words say more: ``bind2`` beats ``bind``), then how much of its
    words they cover; the best wins, a tie is "one of"."""
    names = sorted({cache, *aliases})
    if len(names) == 1:
        return cache, names
    frame_words = set()
    for frame in stack:
        frame_words |= set(_WORD.findall(base_name(frame).lower()))
    scored = []
    for name in names:
        words = _words(name)
        hits = words & frame_words
        if hits:
            scored.append((sum(map(len, hits)), len(hits) / len(words), name))
    if not scored:
        return None, names
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    best = [s for s in scored if s[:2] == scored[0][:2]]
    return (best[0][2] if len(best) == 1 else None), [s[2] for s in (best if len(best) > 1 else scored)]


def eliminate(groups: list[dict]) -> None:
    """Name by elimination the groups whose stacks tie between merged names:
    a name another call site of the same cache owns by its own words is not
    this one's (``__inet_hash_connect``, with inet_bind_bucket_create inlined,
    ties tcp_bind_bucket with tcp_bind2_bucket; inet_bind2_bucket_create
    owns the latter). Sets ``cache_owner`` and ``cache_owner_by``
    "elimination" where one name is left."""
    owned: dict[str, dict[str, str]] = {}  # cache -> owner -> top frame of a group that owns it
    for g in groups:
        if g.get("cache_owner") and g.get("cache_aliases") and g.get("cache_owner_by") is None:
            owned.setdefault(g["cache"], {})[g["cache_owner"]] = base_name(g["stack"][0]) if g["stack"] else ""
    for g in groups:
        if g.get("cache_owner") is not None or not g.get("cache_candidates") or g["cache"] not in owned:
            continue
        top = base_name(g["stack"][0]) if g["stack"] else ""
        left = [c for c in g["cache_candidates"] if c not in owned[g["cache"]] or owned[g["cache"]][c] == top]
        if len(left) == 1 and len(left) < len(g["cache_candidates"]):
            g["cache_owner"], g["cache_owner_by"] = left[0], "elimination"
            del g["cache_candidates"]
