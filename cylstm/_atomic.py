"""Writing a file so that a failure leaves the old one intact.

Every file cylstm writes goes through `atomic_write`: the data goes to a
temporary file in the same folder, is flushed and fsynced, and only then
replaces the target with `os.replace` (atomic on POSIX and Windows). An
exception at any point, KeyboardInterrupt included, removes the temporary
file and leaves whatever was at the target before.
"""
import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside `path`; on success it becomes `path`.

    ``with atomic_write("model.npz") as file: file.write(...)``. `mode` is
    "wb" or "w" (text, UTF-8). The new file gets the permissions a plain
    open() would give it (0o666 less the umask), not those of the file it
    replaces.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    descriptor, temporary = _create_beside(folder, name)
    try:
        with os.fdopen(descriptor, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _create_beside(folder, name):
    """A new file `.name.XXXX.tmp` in `folder`, opened for writing.

    Created with mode 0o666 so that the umask applies as for open() (mkstemp
    would make it 0o600, and reading the umask means setting it process-wide).
    """
    for _ in range(100):
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {os.path.join(folder, name)!r}")
