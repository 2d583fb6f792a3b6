"""The census of page records: those whose frame the buddy allocator holds
free (probes/census.h: census_page).

A page free the kernel skipped (mm_page_free nested in a running free_page:
the kernel runs no program inside itself) leaves a page record no slab list
can retire, and pages have no census of their own lists to walk: the lab's
7.2 guest, beside CI's load, reported 5 pgd_alloc pages of exited processes
so. A page's record is retired once its frame sits in a free block of the
buddy allocator; one on a CPU's pcp list waits until it drains there.
The census runs only once the kernel has skipped a page free (the page
programs' recursion misses: reader.skipped_spaces()).
"""

import numpy as np

from .. import layout
from . import bcc

__all__ = ["retire_free_pages", "look_at_pages"]


def retire_free_pages(fds: dict, reader, recs: dict, min_age_ns: int) -> None:
    """Run census_page on each aged page record of ``recs`` (the reader's
    records of ``min_age_ns``) once some page free was skipped: the
    kernel side retires and counts (found_free). Without a skipped free a
    page record outlives no page, and a run costs 5.3 us a record
    (bench/report_scale.py: 0.6 s for 114,000 records of user pages)."""
    if "census_page" in fds and layout.ENUMS["space"]["SPACE_PAGE"] in reader.skipped_spaces():
        look_at_pages(fds, reader, recs, min_age_ns)


def look_at_pages(fds: dict, reader, recs: dict, min_age_ns: int) -> None:
    """census_page on each aged page record of ``recs``, skipped free or not
    (bench/report_scale.py times it so)."""
    cutoff = int(reader.records.cutoff(min_age_ns)[0])  # a record newer than this is kept
    pages = recs["addr"][recs["space"] == np.uint32(layout.ENUMS["space"]["SPACE_PAGE"])]
    for page in pages.tolist():
        bcc.test_run(fds["census_page"], [page, cutoff])
