"""Running independent parts of a forward pass on several threads.

The kernels release the GIL, so plain Python threads run them in parallel
(ONNX Runtime splits a batch the same way). Each part then keeps BLAS to one
thread, so that k workers use k cores instead of k BLAS pools fighting over
them; that needs threadpoolctl, without which work is not split.

BLAS's thread count is a process-wide setting. Overlapping calls share one
limit: the first to start sets it, the last to finish restores what was there
before, so no interleaving leaves BLAS limited after every call has returned
(each call entering threadpoolctl's own context would restore the limit that
another call had set). One helper thread sets and restores it: threadpoolctl
ignores a restore from a thread other than the one that set the limit.
"""
import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_limit_lock = threading.Lock()
_limit_users = 0
_limit = None


def can_split():
    """Whether BLAS threads can be limited, which splitting needs."""
    return _controller() is not None


def run_all(tasks, workers):
    """Run the callables in `tasks` on `workers` threads, BLAS single-threaded.

    Returns their results in order; the first exception raised by a task is
    raised here.
    """
    with single_threaded_blas():
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(task) for task in tasks]
            return [future.result() for future in futures]


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread while any caller is inside this context
    (a no-op without threadpoolctl)."""
    global _limit_users, _limit
    with _limit_lock:
        if _limit_users == 0:
            _limit = _on_limit_thread(_set_limit)
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0 and _limit is not None:
                _on_limit_thread(_limit.__exit__, None, None, None)
                _limit = None


def _set_limit():
    """threadpoolctl's one-thread BLAS limit, entered; None without threadpoolctl."""
    controller = _controller()
    if controller is None:
        return None
    limit = controller.limit(limits=1, user_api="blas")
    limit.__enter__()
    return limit


@functools.lru_cache(maxsize=None)
def _controller():
    """One ThreadpoolController per process (finding the libraries takes a while);
    None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@functools.lru_cache(maxsize=None)
def _limit_thread(pid):
    """The helper thread of process `pid` (a forked child makes its own)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cylstm-blas-limit")


def _on_limit_thread(function, *args):
    return _limit_thread(os.getpid()).submit(function, *args).result()
