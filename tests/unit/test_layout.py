import os
from bpftrace_leak import layout


def test_parse_header_enums_and_defines():
    enums, defines = layout.parse_header("""
        /* comment, enum fake { X }; */
        #define LEN 32
        #define MASK 0x10
        enum colour { RED = 0, GREEN, BLUE = 7, PINK, };
    """)
    assert enums == {"colour": {"RED": 0, "GREEN": 1, "BLUE": 7, "PINK": 8}}
    assert defines == {"LEN": 32, "MASK": 16}


def test_layout_h_kinds_cover_the_json_schema():
    assert set(layout.KIND_NAMES.values()) == {"kmalloc", "slab", "page", "percpu", "vmalloc", "user-page"}
    assert len(layout.KIND_NAMES) == layout.KINDS["NR_KINDS"]
    assert layout.COUNTERS["NR_COUNTERS"] == len(layout.COUNTERS) - 1
    assert layout.DEFINES["CACHE_NAME_LEN"] == 32


def run_with_layout(tmp_path, body: str) -> list[int]:
    """What C ``body`` (main's, with layout.h included) prints, a number a
    line, compiled by the host's compiler."""
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed (./setup --tests installs gcc)"
    prog = tmp_path / "prog.c"
    prog.write_text(
        "#include <stdint.h>\n#include <stdio.h>\n"
        "typedef uint64_t u64; typedef uint32_t u32; typedef int32_t s32; typedef int64_t s64;\n"
        "typedef uint16_t u16; typedef uint8_t u8;\n"
        f'#include "{layout.HEADER}"\n'
        f"int main(void) {{\n{body}  return 0;\n}}\n")
    subprocess.run([cc, "-O2", "-o", str(tmp_path / "prog"), str(prog)], check=True)
    return [int(x) for x in subprocess.run([str(tmp_path / "prog")], capture_output=True, text=True,
                                           check=True).stdout.split()]


def test_site_hash_is_the_c_one(tmp_path):
    """tracer/sites.py's site_hash() against layout.h's."""
    from bpftrace_leak.tracer.sites import site_hash
    cases = [(0, 0, 0, 0), (0xffffffff81234567, 0xffff888012345600, 1, 257), (0xffffffffc0001234, 0, 3, 53),
             (2**64 - 1, 2**64 - 1, 5, 2**32 - 1), (0x1234, 0xffff888100000000, 2, 0)]
    out = run_with_layout(tmp_path, "".join(
        f"  printf(\"%llu\\n\", (unsigned long long)site_hash({a}ULL, {b}ULL, {k}, {n}U));\n" for a, b, k, n in cases))
    assert out == [site_hash(*case) for case in cases]


def test_page_sites_of_every_order_hash_apart(tmp_path):
    """A page's call site is its gfp flags and order (layout.h: page_site):
    each order of one gfp its own site_hash, so its own mark and `sites`
    entry. With the order at bit 0, shifted out by site_hash, orders 0-7
    shared one: pages of the second order seen had "[stack not recorded]"."""
    out = run_with_layout(tmp_path, (
        "  u64 gfps[] = {0xcc0, 0x152cc0, 0x2800, 0x3fffffff};\n"
        "  for (int g = 0; g < 4; g++) for (u32 o = 0; o <= 12; o++)\n"
        f"    printf(\"%llu\\n\", (unsigned long long)site_hash(0, page_site(gfps[g], o), "
        f"{layout.KINDS['KIND_PAGE']}, 1));\n"))
    marks = {x & ~layout.DEFINES["SITE_MARK_STATE"] for x in out}
    assert len(out) == 4 * 13 and len(marks) == len(out)


def test_catalog_names_every_program_of_probes_c_once():
    """Each program probes.c defines is in the probe catalog, and each catalog
    program is defined in probes.c: the two never drift apart."""
    import re

    from bpftrace_leak.tracer import catalog
    from bpftrace_leak.tracer.bcc import source
    text = source(layout.PROBES_C)  # probes.c with its probes/*.h parts, as BCC compiles it
    defined = set(re.findall(r"^int (\w+)\((?:struct bpf_raw_tracepoint_args|struct pt_regs|struct pins_iter_\w+) \*ctx\)",
                             text, re.M))
    for event in re.findall(r"^SLAB_FREE_COPIES\((\w+), \w+\)", text, re.M):
        defined |= {f"free_{event}_{n}" for n in range(layout.DEFINES["FREE_COPIES"])}
    defined |= {f"kfunc__{fn}" for fn in re.findall(r"^KFUNC_PROBE\((\w+)", text, re.M)}
    listed = {name for p in catalog.PROBES for name in p.programs(p.copies)}
    assert defined == listed
    # and each in the part the catalog names (probes.c is split by concern)
    for p in catalog.PROBES:
        part = open(os.path.join(os.path.dirname(layout.PROBES_C), p.part)).read()
        name = p.program.replace("kfunc__", "")
        assert re.search(rf"^(int {p.program}\(|SLAB_FREE_COPIES\({p.program[5:]},|KFUNC_PROBE\({name},)", part, re.M), \
            (p.program, p.part)
    assert len(catalog.PROBES) == len({(p.target, p.program) for p in catalog.PROBES})


def test_constants_shared_with_python_come_from_layout_h():
    from bpftrace_leak.analysis.refs import WHY_TEXT
    assert set(WHY_TEXT) == set(layout.REF_WHY.values())
    assert layout.DEFINES["PAGE_SLOT_COUNT"] & (layout.DEFINES["PAGE_SLOT_COUNT"] - 1) == 0
    assert set(layout.COUNTER_NAMES.values()) >= {"allocs", "frees", "stack_collisions", "stack_full"}


def test_struct_layouts_parsed_as_c_lays_them_out():
    """Records no map carries (what iterators write) get their numpy dtype
    from layout.h itself: members at their natural alignment, the size
    rounded up to the largest."""
    dt = layout.parse_struct("struct t { u32 a; /* pad */ u64 b; char c[3]; };", "t")
    assert [dt.fields[n][1] for n in ("a", "b", "c")] == [0, 8, 16] and dt.itemsize == 24
    holder = layout.dtype("pin_holder")
    assert holder.itemsize == 32 and holder.fields["kind"][1] == 24
    assert layout.dtype("pin_dentry").fields["name"][0].itemsize == layout.DEFINES["PIN_NAME_LEN"]
