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
