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

__all__ = ["owner"]

#: words that say nothing of a subsystem
_GENERIC = frozenset({"cache", "cachep", "node", "nodes", "head", "struct", "info", "data", "entry", "obj",
                      "object", "objs", "kmem", "slab", "pool", "buf", "list", "item", "alloc", "table"})
_WORD = re.compile(r"[a-z]+")


def _words(name: str) -> set[str]:
    return {w for w in _WORD.findall(name.lower()) if len(w) >= 3 and w not in _GENERIC}


def owner(cache: str, aliases, stack: list[str]) -> tuple[str | None, list[str]]:
    """(the name among ``cache`` and its merged ``aliases`` the allocation with
    ``stack`` belongs to, or None; the names it may belong to, best first).
    An unmerged cache is its own owner."""
    names = sorted({cache, *aliases})
    if len(names) == 1:
        return cache, names
    frame_words = set()
    for frame in stack:
        frame_words |= set(_WORD.findall(base_name(frame).lower()))
    scored = []
    for name in names:
        words = _words(name)
        hits = len(words & frame_words)
        if hits:
            scored.append((hits, hits / len(words), name))
    if not scored:
        return None, names
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    best = [s for s in scored if s[:2] == scored[0][:2]]
    return (best[0][2] if len(best) == 1 else None), [s[2] for s in (best if len(best) > 1 else scored)]
