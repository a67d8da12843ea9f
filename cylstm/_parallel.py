"""Running independent parts of a forward pass on several threads.

The kernels release the GIL, so plain Python threads run them in parallel
(ONNX Runtime splits a batch the same way). Each part then keeps BLAS to one
thread, so that k workers use k cores instead of k BLAS pools fighting over
them; that needs threadpoolctl, without which work is not split.

BLAS's thread count is a process-wide setting. Overlapping calls share one
limit: the first to start sets it, the last to finish restores what was there
before, so no interleaving leaves BLAS limited after every call has returned
(each call entering threadpoolctl's own context would restore the limit that
another call had set).
"""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

_limit_lock = threading.Lock()
_limit_users = 0
_limit_context = None


def can_split():
    """Whether BLAS threads can be limited, which splitting needs."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


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
    """BLAS limited to one thread while any caller is inside this context."""
    global _limit_users, _limit_context
    from threadpoolctl import threadpool_limits

    with _limit_lock:
        if _limit_users == 0:
            _limit_context = threadpool_limits(limits=1, user_api="blas")
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _limit_context.restore_original_limits()
                _limit_context = None
