#!/usr/bin/env python3
"""Print the size of an agent-baremetal guest image (virt-guest, q35-guest)
and what its .text is made of, per crate, from the link map its build
writes (build.rs: OUT_DIR/<bin>.map). Usage:

    guest_image_size.py IMAGE MAP

The image's file size (with its symbols and defmt's string table, which
stay: the log's decoder reads them), what QEMU loads from it, the memory
it takes (with the NOLOAD stack, page tables and DMA arena), its
sections, the agent's .text (agent-core and agent-baremetal), and .text
by the crate whose function each input section holds (after LTO, code
inlined into another crate's function counts for that crate)."""
import os
import re
import struct
import sys
from collections import Counter

# Legacy mangling: `_ZN<len><crate>...`, or for an impl the demangled
# path `<crate..Type as crate..Trait>` (the first path names the crate);
# v0 mangling: `C[s<disambiguator>_]<len><crate>`.
LEGACY_PATH = re.compile(r"([a-z_][a-z0-9_]*)\.\.")
LEGACY = re.compile(r"_ZN(\d+)([A-Za-z_][A-Za-z0-9_]*)")
V0 = re.compile(r"C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)")
# A line of lld's map: VMA, LMA, size, alignment, then the name in the
# "Out" column (one space after the alignment) or further right.
MAP_LINE = re.compile(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ ( *)(\S.*)$")
# The agent: the protocol core and the bare-metal driver and guest code.
AGENT = ("agent_core", "agent_baremetal")


def crate_of(section, guest):
    name = section[len(".text."):] if section.startswith(".text.") else section
    if name.startswith("_ZN"):
        m = LEGACY_PATH.search(name)
        if m:
            return m.group(1)
        m = LEGACY.match(name)
        return m.group(2)[: int(m.group(1))] if m else "(other)"
    if name.startswith("_R"):
        m = V0.search(name)
        crate = m.group(2)[: int(m.group(1))] if m else "(other)"
        # rust_begin_unwind: the guest's panic handler.
        return guest if crate.startswith("___rust") else crate
    if name.startswith(("mem", "__")):
        return "compiler_builtins"
    # Unmangled: the guest's assembly and entry points.
    return guest


def program_headers(data):
    is64 = data[4] == 2
    if is64:
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    else:
        phoff, = struct.unpack_from("<I", data, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    for i in range(phnum):
        base = phoff + i * phentsize
        if is64:
            p_type, _flags, _off, _vaddr, _paddr, filesz, memsz, _align = struct.unpack_from(
                "<IIQQQQQQ", data, base)
        else:
            p_type, _off, _vaddr, _paddr, filesz, memsz, _flags, _align = struct.unpack_from(
                "<IIIIIIII", data, base)
        yield p_type, filesz, memsz


def main():
    image, map_path = sys.argv[1], sys.argv[2]
    guest = os.path.basename(image).replace("-", "_")
    with open(image, "rb") as f:
        data = f.read()
    loads = [(fs, ms) for t, fs, ms in program_headers(data) if t == 1]
    print(f"{os.path.basename(image)}: {len(data)} bytes on disk (with symbols and "
          f"defmt's table); QEMU loads {sum(fs for fs, _ in loads)} bytes; it takes "
          f"{sum(ms for _, ms in loads)} bytes of RAM (with stack and DMA arena)")
    out_sizes = Counter()
    text_by_crate = Counter()
    current = None
    with open(map_path) as f:
        next(f)  # header
        for line in f:
            m = MAP_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            size = int(m.group(1), 16)
            name = m.group(3)
            # Output sections start in the "Out" column, input sections and
            # symbols (local labels such as .Lpcrel_hi0 too) further right.
            indent = len(m.group(2))
            if indent == 0 and name.startswith("."):
                current = name
                out_sizes[current] += size
            elif current == ".text" and name.endswith(")") and ":(" in name:
                text_by_crate[crate_of(name.rsplit(":(", 1)[1][:-1], guest)] += size
    print("  sections: " + ", ".join(
        f"{s} {out_sizes[s]}" for s in (".text", ".rodata", ".data", ".bss", ".stack", ".dma")
        if s in out_sizes))
    total = sum(text_by_crate.values())
    agent = sum(text_by_crate[c] for c in AGENT)
    print(f"  the agent's .text (agent_core + agent_baremetal): {agent} bytes "
          f"of {total} ({100.0 * agent / max(total, 1):.1f} %)")
    print("  .text by crate:")
    for crate, size in text_by_crate.most_common():
        print(f"    {crate:<28} {size:>8}  {100.0 * size / max(total, 1):5.1f} %")


if __name__ == "__main__":
    main()
