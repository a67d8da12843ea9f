"""cylstm.load on hostile files: mutated valid files (bit flips, truncations) and crafted ones
(headers claiming huge models, decompression bombs, lying sizes, foreign compression). Each
either loads the original model unchanged or raises a ValueError naming the file, within
SECONDS, without allocating what the file claims (a tracemalloc peak under 64 MiB, and an
address-space limit 1 GiB above the process's size as a backstop)."""

import contextlib
import functools
import io
import json
import os
import resource
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import cylstm

HEADER = "__cylstm_header__.npy"
D, H = 3, 5
SECONDS = 2.0          # per load (a valid one of this model takes about 1 ms; zipfile reads
                       # a directory of 10,000 members in about 0.2 s)
PEAK_BYTES = 64 << 20  # traced allocations per crafted load
BOMB = 1536 << 20      # 1.5 GiB of zeros, 1.5 MB deflated


# --- building zip files byte by byte --------------------------------------------------------


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npy_header(shape, descr="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


def _member(name, payload, method=zipfile.ZIP_STORED, file_size=None, crc=None, flags=0,
            compress_size=None):
    """A zip entry; `payload` is stored as given (already deflated for ZIP_DEFLATED), and
    the sizes and crc default to those of `payload` (right for stored members only)."""
    return (name, payload, method, len(payload) if file_size is None else file_size,
            zlib.crc32(payload) if crc is None else crc, flags,
            len(payload) if compress_size is None else compress_size)


def _zip(members):
    """Zip bytes holding `members` exactly as described: nothing is checked or recomputed."""
    body, directory = bytearray(), bytearray()
    for name, payload, method, file_size, crc, flags, compress_size in members:
        encoded = name.encode()
        sizes = (crc, compress_size, file_size)
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21,
                                 *sizes, len(encoded), 0, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, *sizes,
                            len(encoded), 0) + encoded + payload
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(directory), len(body), 0)
    return bytes(body + directory + end)


def _deflated(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@functools.lru_cache(maxsize=None)
def _deflated_zeros(prefix, nbytes):
    """Raw deflate of `prefix` then `nbytes` zeros (a multiple of 1 MiB), built from one
    compressed MiB repeated: after a full flush each block stands alone."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    mebibyte = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + mebibyte * (nbytes >> 20) + compressor.flush()


def _model():
    return cylstm.LSTM(D, H, seed=0)


def _header(**changes):
    header = {"format": "cylstm.LSTM", "version": 1, "config": _model().config()}
    header.update(changes.pop("header", {}))
    header["config"].update(changes)
    return json.dumps(header).encode()


def _members(header_bytes=None, skip=(), **weights):
    """A valid model's members, with the header text and some weights' .npy bytes replaced."""
    members = [_member(HEADER, _npy(np.frombuffer(header_bytes or _header(), np.uint8)))]
    for name, value in _model().state_dict().items():
        if name not in skip:
            members.append(_member(name + ".npy", weights.get(name, _npy(value))))
    return members


# --- the crafted files ----------------------------------------------------------------------


def _claims_without_data(size, compress_size=False):
    """A config of D = H = `size` and .npy headers (and zip sizes: the size of the data,
    and with `compress_size` its size on disk too) that agree, but no data."""
    model = cylstm.LSTM(D, H, seed=0)
    members = [_member(HEADER, _npy(np.frombuffer(
        _header(input_size=size, hidden_size=size), np.uint8)))]
    for name in model.state_dict():
        shape = (4 * size, size) if name.startswith("weight") else (4 * size,)
        header = _npy_header(shape)
        claim = len(header) + 4 * int(np.prod(shape))
        members.append(_member(name + ".npy", header, file_size=claim,
                               compress_size=claim if compress_size else None))
    return _zip(members)


def _weight_of_zeros(file_size=None):
    """weight_hh_l0's .npy header, right for the model, followed by 1.5 GiB of zeros."""
    header = _npy_header((4 * H, H))
    payload = _deflated_zeros(header, BOMB)
    return _zip(_members(skip=("weight_hh_l0",)) + [_member(
        "weight_hh_l0.npy", payload, zipfile.ZIP_DEFLATED, file_size or len(header) + BOMB,
        crc=0)])


def _huge_npy_header():
    """weight_ih_l0 (20, 1024) (80 KiB) in .npy format 2.0, whose header claims 4 GiB and is
    1.5 GiB of deflated zeros: what reads the header, reads as much as it asks for."""
    members = _members(_header(input_size=1024), skip=("weight_ih_l0",))
    members.insert(1, _member(
        "weight_ih_l0.npy", _deflated_zeros(b"\x93NUMPY\x02\x00\x00\xff\xff\xff", BOMB),
        zipfile.ZIP_DEFLATED, 128 + 4 * 4 * H * 1024, crc=0))
    return _zip(members)


def _with_method(method):
    """A valid model whose first weight claims another compression method."""
    members = _members()
    members[1] = members[1][:2] + (method,) + members[1][3:]
    return _zip(members)


def _with_flags(flags):
    members = _members()
    members[1] = members[1][:5] + (flags,) + members[1][6:]
    return _zip(members)


def _with_end_record(offset, value):
    """A valid model whose zip end record has `value` in the field at `offset` (12: the size
    of the directory, 16: its offset)."""
    data = bytearray(_zip(_members()))
    struct.pack_into("<L", data, len(data) - 22 + offset, value)
    return bytes(data)


def _compressed_bytes():
    buffer = io.BytesIO()
    header = np.frombuffer(_header(), np.uint8)
    np.savez_compressed(buffer, **{HEADER[:-4]: header}, **_model().state_dict())
    return buffer.getvalue()


CRAFTED = {
    # headers that claim a huge model around the weights of a small one
    "num_layers=10**9": lambda: _zip(_members(_header(num_layers=10**9))),
    "hidden=input=4000": lambda: _zip(_members(_header(input_size=4000, hidden_size=4000))),
    "hidden_size=10**12": lambda: _zip(_members(_header(hidden_size=10**12))),
    "hidden_size=10**12, bidirectional, 10**6 layers": lambda: _zip(_members(_header(
        hidden_size=10**12, num_layers=10**6, bidirectional=True))),
    # headers and .npy headers that agree on a huge model whose data is not there
    "4000x4000, consistent claims, no data": lambda: _claims_without_data(4000),
    "4000x4000, consistent claims and sizes on disk, no data": lambda: _claims_without_data(
        4000, compress_size=True),
    # .npy headers claiming huge arrays
    "npy shape 10**6 x 10**6": lambda: _zip(_members(weight_ih_l0=_npy_header((10**6, 10**6)))),
    "npy shape 2 GiB": lambda: _zip(_members(weight_ih_l0=_npy_header((1 << 29,)))),
    "npy header 2 GiB of uint8": lambda: _zip(
        [_member(HEADER, _npy_header((1 << 31,), "|u1"))] + _members()[1:]),
    "npy object dtype": lambda: _zip(_members(weight_ih_l0=_npy_header((4 * H, D), "|O"))),
    "npy version 2, 4 GiB header of deflated zeros": _huge_npy_header,
    "npy version 3": lambda: _zip(_members(
        weight_ih_l0=b"\x93NUMPY\x03\x00" + _npy_header((4 * H, D))[8:])),
    # decompression bombs
    "zip directory claiming 3 GiB": lambda: _with_end_record(12, 3 << 30),
    "zip directory at offset 3 GiB": lambda: _with_end_record(16, 3 << 30),
    "unknown member of 1.5 GiB zeros": lambda: _zip(_members() + [_member(
        "junk.npy", _deflated_zeros(b"", BOMB), zipfile.ZIP_DEFLATED, BOMB, crc=0)]),
    "weight of 1.5 GiB zeros": lambda: _weight_of_zeros(),
    "weight of 1.5 GiB zeros, size understated": lambda: _weight_of_zeros(
        file_size=len(_npy_header((4 * H, H))) + 4 * 4 * H * H),
    "header of 1.5 GiB zeros": lambda: _zip([_member(
        HEADER, _deflated_zeros(_npy_header((BOMB,), "|u1"), BOMB), zipfile.ZIP_DEFLATED,
        BOMB + 128, crc=0)] + _members()[1:]),
    # JSON headers
    "deeply nested JSON": lambda: _zip(_members(b"[" * 2000 + b"]" * 2000)),
    "10 MB JSON": lambda: _zip(_members(_header() + b" " * 10**7)),
    "huge int in JSON": lambda: _zip(_members(
        _header().replace(b'"hidden_size": 5', b'"hidden_size": ' + b"9" * 4000))),
    "version -7": lambda: _zip(_members(_header(header={"version": -7}))),
    "version 0": lambda: _zip(_members(_header(header={"version": 0}))),
    "version true": lambda: _zip(_members(_header(header={"version": True}))),
    "version 1.0": lambda: _zip(_members(_header(header={"version": 1.0}))),
    "hidden_size true": lambda: _zip(_members(_header(hidden_size=True))),
    "hidden_size 5.0": lambda: _zip(_members(_header(hidden_size=5.0))),
    "dtype object": lambda: _zip(_members(_header(dtype="object"))),
    "dtype as a list": lambda: _zip(_members(_header(dtype=[["a", "<f4"]]))),
    # zip structure
    "compression method 99": lambda: _with_method(99),
    "compression bzip2": lambda: _with_method(zipfile.ZIP_BZIP2),
    "compression lzma": lambda: _with_method(zipfile.ZIP_LZMA),
    "damaged deflate stream": lambda: _zip(_members()[:1] + [_member(
        "weight_ih_l0.npy", b"\xff" * 64, zipfile.ZIP_DEFLATED, 368, crc=0)]
        + _members()[2:]),
    "encrypted member": lambda: _with_flags(1),
    "name twice": lambda: _zip(_members() + _members()[1:2]),
    "10000 members": lambda: _zip(_members() + [_member(f"m{i}.npy", b"") for i in range(10000)]),
    "model of float64 weights in a float32 header": lambda: _zip(_members(
        **{name: _npy(value.astype(np.float64))
           for name, value in _model().state_dict().items()})),
}


# --- limits -----------------------------------------------------------------------------------


def _address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def _memory_limit(extra=1 << 30):
    """The address space may grow by `extra` bytes at most (a backstop: a regression fails
    with MemoryError instead of taking the machine's memory)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY
                                            else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _outcome(path, seconds=SECONDS):
    """("loaded", model) or ("refused", message), checking the time (unless seconds is None)
    and the exception: a ValueError that names the file, not caused by running out of memory."""
    start = time.perf_counter()
    try:
        model = cylstm.load(path)
    except ValueError as exc:
        elapsed = time.perf_counter() - start
        assert os.fspath(path) in str(exc), str(exc)
        cause = exc.__cause__
        assert not isinstance(cause, (MemoryError, RecursionError)), repr(cause)
        result = ("refused", str(exc))
    else:
        elapsed = time.perf_counter() - start
        result = ("loaded", model)
    assert seconds is None or elapsed < seconds, f"{elapsed:.2f} s"
    return result


def _assert_original(model):
    original = _model()
    assert model.config() == original.config()
    for name, value in original.state_dict().items():
        stored = getattr(model, name)
        assert stored.dtype == value.dtype
        np.testing.assert_array_equal(stored, value)


# --- tests ------------------------------------------------------------------------------------


def test_the_builders_make_a_valid_file(tmp_path):
    """The zip writer above is right: unchanged members load the model, compressed ones too."""
    for name, data in [("plain.npz", _zip(_members())), ("deflated.npz", _zip([
            _member(n, _deflated(p), zipfile.ZIP_DEFLATED, len(p), zlib.crc32(p))
            for n, p, *_ in _members()]))]:
        path = tmp_path / name
        path.write_bytes(data)
        _assert_original(cylstm.load(path))
    prefix = b"head"
    assert zlib.decompress(_deflated_zeros(prefix, 3 << 20), -15) == prefix + bytes(3 << 20)


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_file_is_refused_cheaply(tmp_path, case):
    path = tmp_path / "crafted.npz"
    path.write_bytes(CRAFTED[case]())
    with _memory_limit():
        assert _outcome(path)[0] == "refused"
        tracemalloc.start()  # slows Python's allocations several times: not timed
        try:
            message = _outcome(path, seconds=None)[1]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{peak / 2**20:.0f} MiB traced for {case}: {message}"


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_bit_flips(tmp_path, compressed):
    """Single-bit flips anywhere in a saved file: the original model or a ValueError.
    (A flip in zip metadata that nothing reads, a timestamp say, changes nothing.)"""
    original = _compressed_bytes() if compressed else _saved_bytes(tmp_path)
    rng = np.random.default_rng(9)
    path = tmp_path / "flipped.npz"
    outcomes = {"loaded": 0, "refused": 0}
    with _memory_limit():
        for bit in rng.choice(len(original) * 8, size=300, replace=False):
            data = bytearray(original)
            data[bit // 8] ^= 1 << (bit % 8)
            path.write_bytes(bytes(data))
            kind, result = _outcome(path)
            outcomes[kind] += 1
            if kind == "loaded":
                _assert_original(result)
    assert outcomes["refused"] > 150, outcomes


def test_truncations(tmp_path):
    """The file cut short: never loads, always a ValueError naming it. Every length in the
    last 600 bytes (the zip directory, parsed first), every 7th before that."""
    original = _saved_bytes(tmp_path)
    path = tmp_path / "cut.npz"
    lengths = sorted({*range(0, len(original), 7), *range(len(original) - 600, len(original))})
    with _memory_limit():
        for length in lengths:
            path.write_bytes(original[:length])
            kind, _ = _outcome(path)
            assert kind == "refused", length


def test_appended_bytes_change_nothing_or_refuse(tmp_path):
    """Junk after the end record: zipfile finds the directory from the end, so a few
    trailing bytes make the file unreadable; it must still be a ValueError."""
    original = _saved_bytes(tmp_path)
    path = tmp_path / "long.npz"
    for junk in [b"\x00", os.urandom(100), b"PK\x05\x06" + bytes(18)]:
        path.write_bytes(original + junk)
        kind, result = _outcome(path)
        if kind == "loaded":
            _assert_original(result)


def _saved_bytes(tmp_path):
    path = tmp_path / "saved.npz"
    cylstm.save(path, _model())
    return path.read_bytes()
