"""Check a built cylstm wheel: what a package index and a user get.

    python ci/wheel_check.py WHEEL

Fails (exit 1, one line per problem) unless the wheel is under 1 MB, carries
the LICENSE, holds no C or Cython sources, and its extension has no debug
sections and no RPATH/RUNPATH. Uses pyelftools (auditwheel brings it).
"""
import sys
import tempfile
import zipfile
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

MAX_BYTES = 1_000_000


def problems(wheel):
    found = []
    size = wheel.stat().st_size
    if size >= MAX_BYTES:
        found.append(f"{size} bytes, limit {MAX_BYTES}")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
            found.append("no .dist-info/licenses/LICENSE")
        found += [f"source file {name}" for name in names
                  if name.endswith((".c", ".pyx", ".pxd", ".h"))]
        libraries = [name for name in names if name.endswith(".so")]
        if not libraries:
            found.append("no compiled extension")
        with tempfile.TemporaryDirectory() as tmp:
            for name in libraries:
                found += elf_problems(name, Path(archive.extract(name, tmp)))
    return size, found


def elf_problems(name, path):
    found = []
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        if any(section.name.startswith(".debug") for section in elf.iter_sections()):
            found.append(f"{name} has debug sections")
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                found += [f"{name} has {tag.entry.d_tag}" for tag in section.iter_tags()
                          if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH")]
    return found


def main(argv):
    wheel = Path(argv[1])
    size, found = problems(wheel)
    for problem in found:
        print(f"{wheel.name}: {problem}")
    if found:
        return 1
    print(f"{wheel.name}: {size} bytes, LICENSE inside, no sources, no debug info, no RUNPATH")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
