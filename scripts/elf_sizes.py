#!/usr/bin/env python3
"""Print the .text/.rodata/.data/.bss sizes of ELF files (32/64-bit, either
endianness), without binutils for the target. Usage: elf_sizes.py FILE..."""
import struct
import sys

WANTED = (".text", ".rodata", ".data", ".bss")


def sections(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise SystemExit(f"{path}: not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)

    def header(i):
        base = shoff + i * shentsize
        if is64:
            name, _type, _flags, _addr, off, size = struct.unpack_from(end + "IIQQQQ", data, base)
        else:
            name, _type, _flags, _addr, off, size = struct.unpack_from(end + "IIIIII", data, base)
        return name, off, size

    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        name, _, size = header(i)
        label = data[stroff + name:data.index(b"\0", stroff + name)].decode()
        yield label, size


def main():
    print(f"{'file':<60} " + " ".join(f"{w:>9}" for w in WANTED))
    for path in sys.argv[1:]:
        totals = dict.fromkeys(WANTED, 0)
        for label, size in sections(path):
            for w in WANTED:
                if label == w or label.startswith(w + "."):
                    totals[w] += size
        print(f"{path:<60} " + " ".join(f"{totals[w]:>9}" for w in WANTED))


if __name__ == "__main__":
    main()
