"""What this machine is and what is installed: CPU, versions, BLAS, cylstm's SIMD path.

One inventory for both ``python -m cylstm`` (``describe()``: a few lines for people) and the
benchmark's results (``machine_info()``: a dict stored with every run).
"""

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any, Optional

import numpy as np

from .._version import __version__

#: The SIMD flags that matter for the gate math.
_WANTED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")

#: Optional packages whose versions are recorded (None when not installed).
_OPTIONAL = ("scipy", "torch", "onnx", "onnxruntime", "threadpoolctl")


def _cpuinfo_value(prefixes):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(prefixes):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what platform knows)."""
    return (_cpuinfo_value(("model name", "hardware", "cpu model"))
            or platform.processor() or platform.machine())


def cpu_flags() -> list:
    """The SIMD flags of _WANTED_FLAGS this CPU has, from /proc/cpuinfo (Linux x86 only)."""
    flags = set((_cpuinfo_value(("flags",)) or "").split())
    return [flag for flag in _WANTED_FLAGS if flag in flags]


def _version(name):
    """The version of a package, without importing it (importing torch takes seconds)."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__version__", "unknown")
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def simd_path() -> Optional[str]:
    """The gate-math variant cylstm picked on this CPU, or None when the extension is missing."""
    try:
        from .. import _lstm
    except ImportError:
        return None
    return _lstm.simd_path()


def blas_libraries() -> Optional[list]:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded in this process (None
    without threadpoolctl)."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
            "architecture")
    libraries = []
    for lib in threadpool_info():
        entry = {key: lib.get(key) for key in keys if lib.get(key) is not None}
        entry["library"] = os.path.basename(lib.get("filepath", ""))
        entry["filepath"] = lib.get("filepath", "")
        libraries.append(entry)
    return libraries


def scipy_blas() -> str:
    """The BLAS scipy calls: from threadpoolctl when installed, else scipy's build info."""
    for lib in blas_libraries() or ():
        path = lib["filepath"]
        if lib["user_api"] == "blas" and "scipy" in path and "numpy.libs" not in path:
            return (f"{lib.get('internal_api')} {lib.get('version')} "
                    f"({lib.get('architecture', '?')} kernels, {lib.get('num_threads')} threads)")
    try:
        import scipy

        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older SciPy: no dict form of its config
        return "unknown (install threadpoolctl to see it)"


def machine_info() -> dict[str, Any]:
    """A dict describing this machine and the software versions in use."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # 1, 5, 15 minutes
    info["versions"] = {"cylstm": __version__, "numpy": np.__version__,
                        **{name: _version(name) for name in _OPTIONAL}}
    path = simd_path()
    if path is not None:
        from .. import _lstm

        info["cylstm_simd_path"] = path
        info["cylstm_simd_paths_runnable"] = list(_lstm.simd_paths())
    libraries = blas_libraries()
    info["blas"] = None if libraries is None else [
        {key: value for key, value in lib.items() if key != "filepath"} for lib in libraries]
    return info


def describe() -> list:
    """Lines for people: cylstm's version, the Python stack, the BLAS and the SIMD path."""
    info = machine_info()
    versions = info["versions"]
    frameworks = ", ".join(f"{name} {versions[name]}" for name in ("torch", "onnxruntime")
                           if versions.get(name))
    cpus = info.get("cpus_usable", info["cpu_count"])
    return [
        f"cylstm {versions['cylstm']}",
        f"python {info['python']}, numpy {versions['numpy']}, scipy {versions['scipy']}"
        + (f" (also installed: {frameworks})" if frameworks else ""),
        f"CPU: {info['cpu']}, {cpus} usable CPUs",
        f"BLAS: {scipy_blas()} via scipy.linalg.cython_blas",
        f"gate math SIMD path: {info.get('cylstm_simd_path', 'unknown (extension not built)')}"
        + (f" (this CPU runs: {', '.join(info['cylstm_simd_paths_runnable'])}; "
           f"CYLSTM_SIMD chooses)" if "cylstm_simd_paths_runnable" in info else ""),
    ]
