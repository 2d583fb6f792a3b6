from bpftrace_leak.kernel import functions
from bpftrace_leak.kernel import tracefs as kernel

KMEM_CACHE_ALLOC_618 = """name: kmem_cache_alloc
ID: 501
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned long call_site;	offset:8;	size:8;	signed:0;
	field:const void * ptr;	offset:16;	size:8;	signed:0;
	field:__data_loc char[] name;	offset:24;	size:4;	signed:0;
	field:size_t bytes_alloc;	offset:40;	size:8;	signed:0;
	field:bool accounted;	offset:60;	size:1;	signed:0;
"""


def test_parse_format_skips_common_fields():
    fields = kernel.parse_format(KMEM_CACHE_ALLOC_618)
    assert list(fields) == ["call_site", "ptr", "name", "bytes_alloc", "accounted"]
    assert fields["ptr"] == "const void * ptr"


def test_gfp_bit_new_and_old_spelling():
    new = '{( unsigned long)(( gfp_t)((((1UL))) << (20))), "__GFP_HARDWALL"}, {( unsigned long)(( gfp_t)((((1UL))) << (21))), "__GFP_THISNODE"}'
    old = '{(unsigned long)(( gfp_t)0x100000u), "__GFP_HARDWALL"}, {(unsigned long)(( gfp_t)0x200000u), "__GFP_THISNODE"}'
    assert kernel.parse_gfp_bit(new, "__GFP_HARDWALL") == 1 << 20
    assert kernel.parse_gfp_bit(new, "__GFP_THISNODE") == 1 << 21
    assert kernel.parse_gfp_bit(old, "__GFP_HARDWALL") == 0x100000
    assert kernel.parse_gfp_bit(old, "__GFP_NOPE") is None


def test_event_fields_missing_event(tmp_path):
    (tmp_path / "kmem" / "kfree").mkdir(parents=True)
    (tmp_path / "kmem" / "kfree" / "format").write_text(
        "format:\n\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n")
    assert kernel.event_fields("kmem/kfree", str(tmp_path)) == {"call_site": "unsigned long call_site"}
    assert kernel.event_fields("vmalloc/alloc_vmap_area", str(tmp_path)) is None


def test_fentry_unavailable_reads_kallsyms(tmp_path, monkeypatch):
    monkeypatch.setattr(functions.os.path, "exists", lambda p: True)  # as if /sys/kernel/btf/vmlinux
    syms = tmp_path / "kallsyms"
    syms.write_text("ffffffff81000000 T path_get\nffffffff81000040 T path_put.cold\n")
    assert functions.fentry_unavailable(("path_get", "path_put"), str(syms)) == \
        "no BPF trampolines for fentry in this kernel"
    # a range ends at the next symbol, as in every real kallsyms
    syms.write_text(syms.read_text() + "ffffffff81100000 t bpf_trampoline_link_prog\nffffffff81200000 T _etext\n")
    assert functions.fentry_unavailable(("path_get", "path_put"), str(syms)) is None
    assert functions.fentry_unavailable(("path_get", "mntget"), str(syms)) == "mntget not in kallsyms"
    # ranges already read: kallsyms is not opened again
    read = functions.function_ranges(("path_get", functions.TRAMPOLINE_SYMBOL), str(syms))
    assert functions.fentry_why(("path_get",), True, read) is None
    assert functions.fentry_why(("path_get", "mntget"), True, read) == "mntget not in kallsyms"
    monkeypatch.setattr(functions.os.path, "exists", lambda p: False)
    assert functions.fentry_unavailable(("path_get",), str(syms)).startswith("no kernel BTF")
