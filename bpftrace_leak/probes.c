/*
 * kleaktrace kernel side: keeps every outstanding allocation, slab objects
 * in `slots`, pages in `page_slots`, the rest in `live`.
 *
 * Every tracepoint is attached raw: the program gets the tracepoint's
 * arguments themselves, several times cheaper than the perf-event form,
 * which first copies a record into a buffer. Their positions come from the
 * running kernel's BTF (tracer/plan.py): ARG_<event>_<name> is the index of
 * argument <name> in ctx->args, defined for every argument the kernel's
 * tracepoint has, so a program tests for an argument some kernels lack with
 * #ifdef. EVENT_<event> is defined for each tracepoint the session attaches.
 * What each program attaches to is the probe catalog's (tracer/catalog.py).
 *
 * A kernel stack costs about ten times the rest of a probe, so by default a
 * call site takes one on its first allocation and again only once user space
 * promotes it (take_stack).
 *
 * Frees come from raw tracepoints, several identical copies per event. A BPF
 * program does not run while the same program is already running on that CPU
 * (perf-event programs: while *any* of them is), so an RCU softirq freeing
 * sockets inside a running probe would lose its frees and leave phantom
 * leaks (iovisor/bcc#3005). A nested free finds a copy that is not running.
 *
 * Compile-time knobs (tracer/plan.py): SLOT_BITS, SLOT_COUNT, MAX_OBJECTS,
 * STACK_SLOTS, MAX_SITES, STACKS_AT_SITES, TARGET_WORDS, PAGE_BYTES,
 * FILTER_TARGETS, TRACE_CHILDREN, USER_PAGE_GFP, INCLUDE_USER_PAGES,
 * TRACK_ALLOCS, TRACK_REFS, REFS_FENTRY, EVENT_*, ARG_*, and struct
 * offsets from BTF (KMEM_CACHE_*_OFF, TASK_*_OFF, PATH_*_OFF, ...).
 */
#include <uapi/linux/ptrace.h>
#include "layout.h"

/*
 * Addresses kept in maps user space does not mmap() are stored XORed with
 * ADDR_KEY (random per session; its top 16 bits set, so a mangled kernel
 * address is a user-space one and never 0): the holder scan reads all of
 * kernel memory for words that point into outstanding objects, and the
 * tracer's own records of them must not count (layout.h: the holder scan).
 */
#define MANGLE(addr) ((u64)(addr) ^ ADDR_KEY)

#include "probes/scan.h"

/* errno values; the uapi headers differ between trees */
#define EEXIST_ 17
#define ENOMEM_ 12

/* argument ``name`` of raw tracepoint ``event`` */
#define ARG(event, name) (ctx->args[ARG_##event##_##name])

/* kernel memory at ``addr``; 0 where it cannot be read */
static __always_inline u64 kread(u64 addr)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline u32 kread32(u64 addr)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

/* the parts, in the order each needs the ones before it */
#include "probes/maps.h"
#include "probes/filters.h"
#include "probes/objects.h"
#include "probes/retire.h"
#include "probes/census.h"
#include "probes/pins.h"
#include "probes/allocs.h"
#include "probes/events.h"
#include "probes/frees.h"
#include "probes/refs.h"
