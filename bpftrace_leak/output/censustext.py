"""The reference census (report ``census``) as the short table the text
report shows before its stack groups."""

from ..text import printable

__all__ = ["census_lines"]

_SHOWN = 10
_BY = {"file": "open files", "cwd": "working directories", "root": "roots", "mount": "mounts",
       "fs": "their in-memory filesystem", "child": "children"}


def _kinds(explained: dict) -> str:
    return ", ".join(f"{n:,} {printable(k)}" for k, n in explained.items() if n) or "none"


def census_lines(c: dict) -> list[str]:
    """Pinned vs cached, what explains the pins, and the pins nobody explains."""
    refs = c.get("references") or {}
    by = ", ".join(f"{n:,} by {_BY.get(k) or printable(k)}" for k, n in (c.get("pinned_by") or {}).items() if n)
    out = ["", f"reference census: {c['dentries']:,} outstanding dentries: {c['pinned']:,} pinned"
           + (f" ({by})" if by else "") + f", {c['cached']:,} cached (count 0, reclaimable)"
           + (f", {c['dead']:,} dead" if c.get("dead") else "")
           + (f", {c['gone']:,} freed while read" if c.get("gone") else "")]
    if not refs.get("unexplained"):
        out.append(f"  every reference explained ({_kinds({k: v for k, v in refs.items() if k not in ('total', 'unexplained', 'over_explained')})})")
    else:
        out.append(f"  {refs['unexplained']:,} references on {c['pinned_unexplained']:,} dentries explained by "
                   "no open file, cwd, root, child, mount or in-memory filesystem: leaked, or held where no iterator looks")
        for g in (c.get("by_stack") or [])[:_SHOWN]:
            names = ", ".join(printable(n) for n in g["names"][:8]) + (" ..." if g["dentries"] > 8 else "")
            out.append(f"  {g['refs']:>6,} refs on {g['dentries']:,} dentries ({names}) allocated at "
                       + " <- ".join(printable(f) for f in g["stack"][:4]))
        for p in (c.get("by_parent") or [])[:_SHOWN]:
            out.append(f"  {p['refs']:>6,} refs on {p['dentries']:,} dentries in {printable(p['parent'])}")
    for m in (c.get("mounts") or [])[:_SHOWN]:
        out.append(f"  mount on {printable(m['mountpoint'])}: {m['since_start']:+,} unexplained references "
                   + ("(a new mount)" if m.get("new") else "since the start")
                   + f" (count {m['count']:,}; explained {_kinds(m['explained'])})")
    return out
