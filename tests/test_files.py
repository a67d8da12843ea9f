"""cylstm.save / cylstm.load: an .npz of plain arrays with a JSON header. The round trip keeps
the configuration and bit-identical outputs; loading never unpickles; every bad file (missing
excepted: FileNotFoundError) is a ValueError that names it."""

import errno
import io
import itertools
import json
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import cylstm
from modelutil import assert_results_same, random_hx, random_input, random_lengths

HEADER_KEY = "__cylstm_header__"
D, H = 3, 5

CONFIGS = [dict(num_layers=layers, bidirectional=bidir, proj_size=proj, bias=bias,
                batch_first=bf, padding=padding, dtype=dtype)
           for layers, bidir, proj, bias, bf, padding, dtype in [
               (1, False, 0, True, False, "zeros", np.float32),
               (2, True, 2, True, True, "carry", np.float64),
               (3, False, 3, False, False, "carry", np.float32),
               (2, True, 0, False, True, "zeros", np.float64),
               (1, True, 4, True, False, "zeros", np.float64)]]


def _cid(cfg):
    return "L{num_layers}-bi{bidirectional:d}-p{proj_size}-b{bias:d}-bf{batch_first:d}-" \
        "{padding}-{name}".format(name=np.dtype(cfg["dtype"]).name, **cfg)


def _saved(tmp_path, name="model.npz", **config):
    model = cylstm.LSTM(D, H, seed=0, **config)
    path = tmp_path / name
    cylstm.save(path, model)
    return model, path


def _write_npz(path, header=None, arrays=None, header_bytes=None):
    """An npz with our header key holding `header` (JSON) or raw `header_bytes`."""
    contents = dict(arrays or {})
    if header is not None:
        header_bytes = json.dumps(header).encode()
    if header_bytes is not None:
        contents[HEADER_KEY] = np.frombuffer(header_bytes, dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **contents)
    return path


def _valid_header(**changes):
    model = cylstm.LSTM(D, H, seed=0)
    header = {"format": "cylstm.LSTM", "version": 1, "config": model.config()}
    header.update(changes)
    return header, model.state_dict()


def _check_refused(path):
    """load(path) raises a ValueError naming the file."""
    with pytest.raises(ValueError) as info:
        cylstm.load(path)
    assert os.fspath(path) in str(info.value), str(info.value)
    return str(info.value)


# --- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=_cid)
def test_round_trip(tmp_path, config):
    rng = np.random.default_rng(0)
    model = cylstm.LSTM(D, H, seed=1, **config)
    # weights changed after construction: the file must carry the current ones
    model.load_state_dict({k: v * 1.5 + 0.01 for k, v in model.state_dict().items()})
    path = tmp_path / "m.npz"
    cylstm.save(path, model)
    loaded = cylstm.load(path)
    assert type(loaded) is cylstm.LSTM
    assert loaded.config() == model.config()
    for attr in ("num_layers", "bidirectional", "proj_size", "batch_first", "padding", "bias",
                 "input_size", "hidden_size"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded.dtype == np.dtype(config["dtype"])
    sd, loaded_sd = model.state_dict(), loaded.state_dict()
    assert list(loaded_sd) == list(sd)
    for name in sd:
        assert loaded_sd[name].dtype == sd[name].dtype, name
        np.testing.assert_array_equal(loaded_sd[name], sd[name])
    x = random_input(rng, model, 6, 4)
    hx = random_hx(rng, model, 4)
    lengths = random_lengths(rng, 4, 6)
    assert_results_same(loaded(x, hx), model(x, hx))
    assert_results_same(loaded(x, hx, lengths), model(x, hx, lengths))


@pytest.mark.parametrize("kind", ["str", "pathlib", "no-extension", "other-extension"])
def test_path_kinds_and_exact_file_name(tmp_path, kind):
    model = cylstm.LSTM(D, H, 2, bidirectional=True, seed=3)
    name = {"str": "a.npz", "pathlib": "b.npz", "no-extension": "model",
            "other-extension": "model.cylstm"}[kind]
    path = tmp_path / name
    given = str(path) if kind == "str" else path
    cylstm.save(given, model)
    assert sorted(os.listdir(tmp_path)) == [name]   # exactly that name, nothing added
    loaded = cylstm.load(given)
    x = np.random.default_rng(0).standard_normal((4, 2, D))
    assert_results_same(loaded(x), model(x))


def test_file_holds_only_plain_arrays_and_a_json_header(tmp_path):
    model, path = _saved(tmp_path, num_layers=2, bidirectional=True, proj_size=2)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {HEADER_KEY, *model.state_dict()}
        header = json.loads(archive[HEADER_KEY].tobytes().decode("utf-8"))
        for key in model.state_dict():
            assert archive[key].dtype != object
    assert header["format"] == "cylstm.LSTM" and header["version"] == 1
    assert header["config"] == model.config()
    assert zipfile.is_zipfile(path)


def test_save_overwrites(tmp_path):
    _, path = _saved(tmp_path, num_layers=2)
    second = cylstm.LSTM(D, H, 1, bidirectional=True, seed=9)
    cylstm.save(path, second)
    assert cylstm.load(path).config() == second.config()


def test_save_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="model"):
        cylstm.save(tmp_path / "x.npz", {"weight_ih_l0": np.zeros((20, 3))})
    assert not (tmp_path / "x.npz").exists()


# --- a failed save leaves the previous file -------------------------------------------------


def _previous_file(tmp_path):
    """model.npz holding a saved model, and its bytes."""
    _, path = _saved(tmp_path, num_layers=2, bidirectional=True)
    return path, path.read_bytes()


def _assert_untouched(tmp_path, path, before):
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]   # no temporary file left behind
    cylstm.load(path)


@pytest.mark.parametrize("change", ["shape", "ndim", "complex", "strings", "none"])
def test_save_refuses_weights_that_load_would_refuse(tmp_path, change):
    """A weight the model call would refuse is refused before anything is written.
    (The model refuses such an assignment; go round it to test save's own check.)"""
    path, before = _previous_file(tmp_path)
    model = cylstm.LSTM(D, H, seed=1)
    object.__setattr__(model, "weight_ih_l0", {"shape": np.zeros((4 * H, D + 1), np.float32),
                          "ndim": np.zeros(4 * H * D, np.float32),
                          "complex": np.zeros((4 * H, D), np.complex64),
                          "strings": np.full((4 * H, D), "x"),
                          "none": None}[change])
    error = ValueError if change in ("shape", "ndim", "none") else TypeError
    with pytest.raises(error, match="cannot save the model: state_dict\\['weight_ih_l0'\\]"):
        cylstm.save(path, model)
    _assert_untouched(tmp_path, path, before)


def test_save_writes_weights_in_the_model_dtype(tmp_path):
    """A float64 array assigned to a float32 model is saved as the float32 the model uses."""
    model = cylstm.LSTM(D, H, seed=1)
    wide = np.random.default_rng(0).standard_normal((4 * H, H))
    model.weight_hh_l0 = wide
    path = tmp_path / "m.npz"
    cylstm.save(path, model)
    loaded = cylstm.load(path)
    assert loaded.weight_hh_l0.dtype == np.float32
    np.testing.assert_array_equal(loaded.weight_hh_l0, wide.astype(np.float32))
    x = np.random.default_rng(1).standard_normal((4, 2, D))
    assert_results_same(loaded(x), model(x))


def test_failure_while_collecting_weights(tmp_path, monkeypatch):
    path, before = _previous_file(tmp_path)

    def broken(self):
        raise RuntimeError("weights unavailable")

    monkeypatch.setattr(cylstm.LSTM, "state_dict", broken)
    with pytest.raises(RuntimeError, match="weights unavailable"):
        cylstm.save(path, cylstm.LSTM(D, H, seed=1))
    monkeypatch.undo()
    _assert_untouched(tmp_path, path, before)


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()], ids=["no-space", "interrupt"])
def test_failure_in_the_middle_of_the_write(tmp_path, monkeypatch, failure):
    """The third array is half written when the write fails: the previous file stays."""
    path, before = _previous_file(tmp_path)
    write_array = np.lib.format.write_array
    seen = []

    def failing(fid, array, *args, **kwargs):
        if len(seen) == 2:
            data = io.BytesIO()
            write_array(data, array, *args, **kwargs)
            fid.write(data.getvalue()[:len(data.getvalue()) // 2])
            fid.flush()
            seen.append({name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)})
            raise failure
        seen.append(None)
        write_array(fid, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(type(failure)):
        cylstm.save(path, cylstm.LSTM(D, H, 3, seed=1))
    monkeypatch.undo()
    # the failure came while a temporary file beside the target held part of the new model
    partial = {name: size for name, size in seen[-1].items() if name != path.name}
    assert len(partial) == 1 and next(iter(partial.values())) > 0, seen[-1]
    _assert_untouched(tmp_path, path, before)


def test_full_disk(tmp_path):
    """A real write error from the kernel: the process may not write files beyond 4 KiB
    (RLIMIT_FSIZE, as a full disk would stop it), in a child process."""
    path, before = _previous_file(tmp_path)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import cylstm
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))
        try:
            cylstm.save({str(path)!r}, cylstm.LSTM(8, 32, 2, seed=1))
        except OSError as exc:
            print("OSError", exc.errno)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.stdout.split() == ["OSError", str(errno.EFBIG)], result.stderr
    _assert_untouched(tmp_path, path, before)


def test_failed_save_of_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(KeyboardInterrupt):
        cylstm.save(tmp_path / "new.npz", cylstm.LSTM(D, H, seed=1))
    assert os.listdir(tmp_path) == []


# --- other writers of the same arrays ------------------------------------------------------


@pytest.mark.parametrize("variant", ["compressed", "big-endian", "fortran-order"])
def test_other_npz_writers_load(tmp_path, variant):
    """np.savez_compressed of the same arrays, or the arrays in big-endian or Fortran order
    (as another machine or a hand-written file may hold them): the same model."""
    model = cylstm.LSTM(D, H, 2, bidirectional=True, proj_size=2, seed=4, dtype=np.float64)
    header = {"format": "cylstm.LSTM", "version": 1, "config": model.config()}
    arrays = {name: {"compressed": value, "big-endian": value.astype(value.dtype.newbyteorder()),
                     "fortran-order": np.asfortranarray(value)}[variant]
              for name, value in model.state_dict().items()}
    path = tmp_path / "m.npz"
    writer = np.savez_compressed if variant == "compressed" else np.savez
    writer(path, **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)}, **arrays)
    loaded = cylstm.load(path)
    assert loaded.config() == model.config()
    for name, value in model.state_dict().items():
        assert getattr(loaded, name).dtype == np.float64
        np.testing.assert_array_equal(getattr(loaded, name), value)


def test_what_cannot_be_opened_raises_what_open_raises(tmp_path):
    """Not a damaged file but no file to read: the OSError of open(), naming the path."""
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        cylstm.load(tmp_path)


# --- bad files ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        cylstm.load(tmp_path / "nothing-here.npz")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    _check_refused(path)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_file(tmp_path, fraction):
    _, path = _saved(tmp_path, num_layers=2, bidirectional=True)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    _check_refused(path)


def test_damaged_weight_bytes(tmp_path):
    """One flipped byte inside a stored weight: the zip's CRC catches it."""
    model, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    weights = model.state_dict()["weight_hh_l0"].tobytes()
    start = bytes(data).find(weights)
    assert start > 0
    data[start + len(weights) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _check_refused(path)


def test_plain_npy(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.zeros((20, 3)))
    _check_refused(path)


def test_zip_without_header(tmp_path):
    """An npz of exactly the right weights, but not written by cylstm.save."""
    model = cylstm.LSTM(D, H, seed=0)
    path = tmp_path / "weights.npz"
    np.savez(path, **model.state_dict())
    _check_refused(path)


def test_zip_that_is_not_an_npz(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    _check_refused(path)


def test_text_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text('{"format": "cylstm.LSTM", "version": 1}')
    _check_refused(path)


class _Trap:
    """Unpickling this creates the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_file_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    for name, payload in [("model.pkl", cylstm.LSTM(D, H, seed=0)),
                          ("trap.npz", _Trap(marker))]:
        path = tmp_path / name
        with open(path, "wb") as f:
            pickle.dump(payload, f)
        _check_refused(path)
    # numpy's own pickled-object fallback inside an npz: refused, not run
    header, sd = _valid_header()
    sd["weight_hh_l0"] = np.array([_Trap(marker)], dtype=object)
    path = tmp_path / "objects.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)},
             **sd)
    path.write_bytes(buffer.getvalue())
    _check_refused(path)
    header_path = tmp_path / "object-header.npz"
    np.savez(header_path, **{HEADER_KEY: np.array([_Trap(marker)], dtype=object)})
    _check_refused(header_path)
    assert not marker.exists()


@pytest.mark.parametrize("header_bytes", [
    b"", b"not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'"cylstm.LSTM"', b"null",
    b'{"format": "cylstm.LSTM", "version": 1}',                    # no config
    b'{"format": "cylstm.LSTM", "config": {}}',                    # no version
    b'{"version": 1, "config": {}}',                               # no format
], ids=["empty", "not-json", "not-utf8", "list", "string", "null", "no-config",
        "no-version", "no-format"])
def test_damaged_header(tmp_path, header_bytes):
    _, sd = _valid_header()
    _check_refused(_write_npz(tmp_path / "m.npz", header_bytes=header_bytes, arrays=sd))


def test_header_of_another_dtype(tmp_path):
    """The header key holding float numbers instead of the uint8 bytes of a JSON text."""
    _, sd = _valid_header()
    path = tmp_path / "m.npz"
    np.savez(path, **{HEADER_KEY: np.arange(5.0)}, **sd)
    _check_refused(path)


@pytest.mark.parametrize("changes", [
    {"format": "keras.LSTM"}, {"format": None}, {"config": [1, 2]}, {"config": "LSTM"},
], ids=["other-format", "null-format", "config-list", "config-string"])
def test_wrong_format(tmp_path, changes):
    header, sd = _valid_header(**changes)
    _check_refused(_write_npz(tmp_path / "m.npz", header, sd))


@pytest.mark.parametrize("version", [2, 99, "1", 1.5, None])
def test_newer_or_unknown_version(tmp_path, version):
    header, sd = _valid_header(version=version)
    msg = _check_refused(_write_npz(tmp_path / "m.npz", header, sd))
    assert "version" in msg, msg


@pytest.mark.parametrize("change", [
    {"hidden_size": -5}, {"hidden_size": 6}, {"num_layers": 2}, {"bidirectional": True},
    {"proj_size": 7}, {"padding": "sideways"}, {"dtype": "int8"}, {"unknown_option": 1},
], ids=lambda c: next(iter(c)))
def test_config_that_does_not_fit(tmp_path, change):
    header, sd = _valid_header()
    header["config"].update(change)
    _check_refused(_write_npz(tmp_path / "m.npz", header, sd))


def test_missing_config_key(tmp_path):
    header, sd = _valid_header()
    del header["config"]["hidden_size"]
    _check_refused(_write_npz(tmp_path / "m.npz", header, sd))


@pytest.mark.parametrize("what", ["missing", "extra", "shape"])
def test_weights_that_do_not_fit(tmp_path, what):
    header, sd = _valid_header()
    if what == "missing":
        del sd["bias_hh_l0"]
    elif what == "extra":
        sd["weight_hr_l0"] = np.zeros((2, H), np.float32)
    else:
        sd["weight_ih_l0"] = np.zeros((4 * H, D + 1), np.float32)
    msg = _check_refused(_write_npz(tmp_path / "m.npz", header, sd))
    assert {"missing": "bias_hh_l0", "extra": "weight_hr_l0", "shape": "weight_ih_l0"}[what] \
        in msg, msg


def test_every_bad_file_names_itself(tmp_path):
    """The same checks from a directory with an unusual name."""
    folder = tmp_path / "dir with spaces"
    folder.mkdir()
    for name, content in [("empty", b""), ("junk", os.urandom(64))]:
        path = folder / name
        path.write_bytes(content)
        _check_refused(path)


def test_loaded_model_streams_and_pickles(tmp_path):
    """A loaded model is an ordinary model."""
    _, path = _saved(tmp_path, num_layers=2, proj_size=2)
    loaded = cylstm.load(path)
    clone = pickle.loads(pickle.dumps(loaded))
    x = np.random.default_rng(1).standard_normal((5, 2, D))
    assert_results_same(clone(x), loaded(x))
    stream = loaded.stream()
    stream(x[:2])
    assert stream.state[0].shape == (2, 2, 2)


def test_round_trip_of_all_small_architectures(tmp_path):
    """Every combination of the architecture flags, quickly: config and weights survive."""
    for i, (layers, bidir, proj, bias) in enumerate(itertools.product(
            [1, 2], [False, True], [0, 2], [False, True])):
        model = cylstm.LSTM(D, H, layers, bidirectional=bidir, proj_size=proj, bias=bias,
                            seed=i)
        path = tmp_path / f"{i}.npz"
        cylstm.save(path, model)
        loaded = cylstm.load(path)
        assert loaded.config() == model.config()
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(getattr(loaded, name), value)
