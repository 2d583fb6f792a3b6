"""kfree_rcu's pages of pointers, each CPU's: which are dead whole and where
the rest go stale (tracer/scan_plan.py: _RCU_PAGES says why). Read from
Python with the census's peeks; a chain longer than MAX_PAGES, or a count
no page holds, is a misread and ends the walk there."""

from .memory import PAGE

__all__ = ["rcu_pages"]

MAX_PAGES = 64  # per chain; the kernel caches at most rcu_min_cached_objs (5) pages a CPU
CHANNELS, BATCHES = 2, 2  # FREE_N_CHANNELS (kmalloc'd, vmalloc'd), KFREE_N_BATCHES


def _chain(u64, head: int, where: dict):
    """The pages of one channel's chain: a list_head (6.2 on) or a pointer
    followed by each page's next (6.1)."""
    if "list" in where:
        node, n = u64(head), 0
        while node and node != head and n < MAX_PAGES:
            yield node - where["list"]
            node, n = u64(node), n + 1
    else:
        page, n = u64(head), 0
        while page and n < MAX_PAGES:
            yield page
            page, n = u64(page + where["next"]), n + 1


def rcu_pages(census, where: dict) -> tuple[list[int], dict[int, int]]:
    """(the pages kfree_rcu caches for reuse: dead whole, {each page in use:
    the offset of its first stale word, past its nr_records})."""
    u64 = census.u64
    dead, tails = [], {}
    stride = 16 if "list" in where else 8  # a list_head or a pointer per channel
    capacity = (PAGE - where["records"]) // 8
    for base in census.cpu_bases().values():
        krc = base + where["var"]
        page, n = u64(krc + where["cache"]), 0
        while page and n < MAX_PAGES:  # an llist: each cached page's first word is the next
            dead.append(page)
            page, n = u64(page), n + 1
        heads = [krc + where["heads"] + stride * c for c in range(CHANNELS)]
        heads += [krc + where["works"] + where["work_size"] * b + where["free_heads"] + stride * c
                  for b in range(BATCHES) for c in range(CHANNELS)]
        for head in heads:
            for page in _chain(u64, head, where):
                nr = u64(page + where["nr_records"])
                if nr is None or nr > capacity or page % PAGE:
                    break
                tails[page] = where["records"] + 8 * nr
    return [p for p in dead if p % PAGE == 0], tails
