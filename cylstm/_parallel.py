"""Running independent parts of a forward pass on several threads.

The kernels release the GIL, so plain Python threads run them in parallel
(ONNX Runtime splits a batch the same way). Each part then keeps BLAS to one
thread, so that k workers use k cores instead of k BLAS pools fighting over
them; that needs threadpoolctl, without which work is not split.
"""
from concurrent.futures import ThreadPoolExecutor


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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(task) for task in tasks]
            return [future.result() for future in futures]
