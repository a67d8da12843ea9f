"""What the installed wheel holds: the package and its compiled extension, the
LICENSE and true metadata, and nothing that only building needs (C and Cython
sources, debug info, a RUNPATH to the build host).

These check an install from a wheel, as ci/test.sh and cibuildwheel make it; an
editable development install is the source tree itself and is not what users get.
"""
import json
import struct
import sys
from importlib import metadata
from pathlib import Path

import pytest

import cylstm
from cylstm import _lstm

DIST = metadata.distribution("cylstm")


def _editable():
    direct_url = DIST.read_text("direct_url.json")
    return bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


pytestmark = pytest.mark.skipif(
    _editable(), reason="an editable install is the source tree: ci/test.sh checks the wheel")


def test_the_wheel_holds_no_build_sources():
    files = [str(path) for path in DIST.files]
    assert any(name.startswith("cylstm/_lstm.") for name in files), files
    sources = [name for name in files if name.endswith((".c", ".pyx", ".pxd", ".h"))]
    assert sources == []
    package = Path(cylstm.__file__).parent
    assert sorted(path.name for path in package.glob("*.c")) == []


def test_the_license_is_inside_and_the_metadata_names_it():
    licenses = [path for path in DIST.files if path.name == "LICENSE"]
    assert len(licenses) == 1, list(DIST.files)
    text = licenses[0].read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text
    meta = DIST.metadata
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.9"
    requires = DIST.requires
    assert "numpy>=1.22" in requires and "scipy>=1.9" in requires
    assert meta["Version"] == cylstm.__version__


def _elf_sections(data):
    """(name, type, offset, size, entry size) of each section of a 64-bit little-endian ELF."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "64-bit little-endian ELF"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize) for k in range(shnum)]
    strtab_offset = headers[shstrndx][4]
    sections = []
    for name, kind, _flags, _addr, offset, size, _link, _info, _align, entsize in headers:
        start = strtab_offset + name
        sections.append((data[start:data.index(b"\0", start)].decode(), kind, offset, size, entsize))
    return sections


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF: the Linux wheels")
def test_the_extension_has_no_runpath_and_no_debug_info():
    data = Path(_lstm.__file__).read_bytes()
    sections = _elf_sections(data)
    names = [name for name, *_ in sections]
    assert ".dynamic" in names and ".text" in names
    assert [name for name in names if name.startswith(".debug")] == []
    DT_NULL, DT_NEEDED, DT_RPATH, DT_RUNPATH = 0, 1, 15, 29
    tags = []
    for _name, kind, offset, size, entsize in sections:
        if kind == 6:  # SHT_DYNAMIC: (tag, value) pairs
            tags += [struct.unpack_from("<qQ", data, offset + k)[0] for k in range(0, size, entsize)]
    assert DT_NEEDED in tags and DT_NULL in tags
    assert DT_RPATH not in tags and DT_RUNPATH not in tags
    # stripped: 1.27 MB with three SIMD paths of the plain and variant cells; 3.5 MB
    # with debug info (before the variants)
    assert len(data) < 1_500_000
