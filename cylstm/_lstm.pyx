"""Stateless LSTM kernels: the whole time loop in C, without the GIL.

Each `def` entry takes typed memoryviews, checks shapes and BLAS limits with
the GIL held, allocates its scratch with NumPy (nothing shared between calls,
so concurrent calls from threads are safe), then runs one `with nogil:` block.
Validation of user input belongs to cylstm/lstm.py; the checks here only keep
a wrong call from reading or writing out of bounds.
"""
import numpy as np
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset

from ._blas cimport gemm_nt, gemv_n


cdef extern from "_gates.h" nogil:
    void cylstm_cell_f32(Py_ssize_t H, const float *gates, const float *bias,
                         float *c, float *h) noexcept
    void cylstm_cell_f64(Py_ssize_t H, const double *gates, const double *bias,
                         double *c, double *h) noexcept
    const char *cylstm_simd_path() noexcept


cdef enum:
    # Bytes of gate pre-activations computed per input-projection gemm. Large
    # enough for the gemm to run at full speed, small enough to stay in L2
    # while the time loop consumes it, and independent of the sequence length.
    GATE_CHUNK_BYTES = 512 * 1024


def simd_path():
    """The instruction set the fused gate math runs with on this CPU."""
    return cylstm_simd_path().decode()


cdef inline void cell(Py_ssize_t H, const floating *gates, const floating *bias,
                      floating *c, floating *h) noexcept nogil:
    if floating is float:
        cylstm_cell_f32(H, gates, bias, c, h)
    else:
        cylstm_cell_f64(H, gates, bias, c, h)


cdef inline void matmul_nt(int m, int n, int k, const floating *a,
                           const floating *b, floating beta,
                           floating *c) noexcept nogil:
    """C := A @ B.T + beta * C, all contiguous: gemv when A is one row."""
    if m == 1:
        gemv_n(n, k, 1, b, k, a, beta, c)
    else:
        gemm_nt(m, n, k, 1, a, k, b, k, beta, c, n)


cdef _check_blas_int(str what, Py_ssize_t value):
    if value > INT_MAX:
        raise ValueError(
            f"{what} = {value} exceeds the 32-bit BLAS limit {INT_MAX}")


cdef _check_shape(str name, tuple shape, tuple expected):
    if shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {shape}")


def forward_layer(const floating[:, :, :] x,
                  const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh,
                  const floating[::1] bias,
                  floating[:, ::1] h,
                  floating[:, ::1] c,
                  floating[:, :, :] out,
                  bint gate_math=True,
                  *,
                  const floating[:, ::1] w_hr=None,
                  lengths=None,
                  bint reverse=False):
    """One LSTM layer, one direction, over a whole batch of sequences.

    x (T, B, D): any outer strides, contiguous rows. w_ih (4H, D), w_hh
    (4H, P), bias (4H,) = b_ih + b_hh, gate order i, f, g, o; w_hr (P, H)
    projects h (LSTMP), P = H without it. h (B, P) and c (B, H) hold the
    initial state on entry and the final state on return. out (T, B, P): any
    outer strides, contiguous rows; only valid steps are written.

    lengths (B,) ints in [0, T]: row b runs steps 0 .. lengths[b] - 1 and its
    final state is the one after its last valid step. reverse: each row runs
    backwards from its last valid step. With gate_math=False only the BLAS
    calls run (the speed floor).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t G = w_ih.shape[0], H = G // 4
    cdef bint projected = w_hr is not None
    cdef Py_ssize_t P = w_hr.shape[0] if projected else H
    _check_shape("w_ih", (w_ih.shape[0], w_ih.shape[1]), (4 * H, D))
    _check_shape("w_hh", (w_hh.shape[0], w_hh.shape[1]), (G, P))
    if projected:
        _check_shape("w_hr", (w_hr.shape[0], w_hr.shape[1]), (P, H))
    _check_shape("bias", (bias.shape[0],), (G,))
    _check_shape("h", (h.shape[0], h.shape[1]), (B, P))
    _check_shape("c", (c.shape[0], c.shape[1]), (B, H))
    _check_shape("out", (out.shape[0], out.shape[1], out.shape[2]), (T, B, P))
    cdef Py_ssize_t itemsize = sizeof(floating)
    if (D > 1 and x.strides[2] != itemsize) or (P > 1 and out.strides[2] != itemsize):
        raise ValueError("x and out must have contiguous rows (last axis)")
    if T == 0 or B == 0 or H == 0:
        return

    # Rows sorted by length, longest first, so the rows still running at any
    # step are a prefix: padded steps cost nothing (PyTorch's packed batches).
    if lengths is None:
        order_array = np.arange(B, dtype=np.intp)
        length_array = np.full(B, T, dtype=np.intp)
    else:
        length_array = np.asarray(lengths, dtype=np.intp)
        _check_shape("lengths", length_array.shape, (B,))
        if B and (length_array.min() < 0 or length_array.max() > T):
            raise ValueError(f"lengths must lie in [0, {T}]")
        order_array = np.argsort(-length_array, kind="stable")
        length_array = np.ascontiguousarray(length_array[order_array])
    cdef const Py_ssize_t[::1] order = order_array
    cdef const Py_ssize_t[::1] length = length_array
    cdef Py_ssize_t longest = length[0]

    # The input projection reads x in place when its rows for a time chunk
    # are one contiguous block in processing order; otherwise each chunk is
    # first gathered into that order.
    cdef Py_ssize_t stride_t = x.strides[0] // itemsize
    cdef Py_ssize_t stride_b = x.strides[1] // itemsize
    cdef bint gather = not (
        lengths is None and not reverse
        and (B == 1 or stride_b == D) and (T == 1 or stride_t == B * D))

    # Time steps per input-projection gemm: bounded scratch for any T.
    cdef Py_ssize_t chunk = max(1, min(longest, GATE_CHUNK_BYTES // (B * G * itemsize)))
    for what, value in (("input size", D), ("4 * hidden size", G),
                        ("rows of one input-projection gemm", chunk * B)):
        _check_blas_int(what, value)

    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] gates = np.empty((chunk * B, G), dtype=dtype)
    cdef floating[:, ::1] x_chunk = np.zeros((chunk * B if gather else 1, D), dtype=dtype)
    cdef floating[:, ::1] h_sorted = np.asarray(h)[order_array]
    cdef floating[:, ::1] c_sorted = np.asarray(c)[order_array]
    cdef floating[:, ::1] h_cell = np.zeros((B if projected else 1, H), dtype=dtype)

    cdef Py_ssize_t n_chunks = (longest + chunk - 1) // chunk
    cdef Py_ssize_t k, first, steps, rows, active, s, step, p, t
    cdef floating *h_new
    with nogil:
        rows = B  # rows still running at the current step
        for k in range(n_chunks):
            first = k * chunk
            steps = min(chunk, longest - first)
            while length[rows - 1] <= first:
                rows -= 1
            # gates[s * rows + p] = x[t(p, first + s), order[p]] @ w_ih.T
            if gather:
                for s in range(steps):
                    for p in range(rows):
                        if length[p] > first + s:
                            t = length[p] - 1 - (first + s) if reverse else first + s
                            memcpy(&x_chunk[s * rows + p, 0], &x[t, order[p], 0],
                                   D * itemsize)
                gemm_nt(<int> (steps * rows), <int> G, <int> D, 1, &x_chunk[0, 0],
                        <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0], <int> G)
            else:
                gemm_nt(<int> (steps * B), <int> G, <int> D, 1, &x[first, 0, 0],
                        <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0], <int> G)

            active = rows
            for s in range(steps):
                step = first + s
                while length[active - 1] <= step:
                    active -= 1
                # gates[s, :active] += h[:active] @ w_hh.T
                matmul_nt(<int> active, <int> G, <int> P, &h_sorted[0, 0],
                          &w_hh[0, 0], 1, &gates[s * rows, 0])
                if not gate_math:
                    if projected:
                        matmul_nt(<int> active, <int> P, <int> H, &h_cell[0, 0],
                                  &w_hr[0, 0], 0, &h_sorted[0, 0])
                    continue
                # c, h = cell(gates + bias, c)
                for p in range(active):
                    h_new = &h_cell[p, 0] if projected else &h_sorted[p, 0]
                    cell(H, &gates[s * rows + p, 0], &bias[0], &c_sorted[p, 0], h_new)
                if projected:
                    # h[:active] = h_cell[:active] @ w_hr.T
                    matmul_nt(<int> active, <int> P, <int> H, &h_cell[0, 0],
                              &w_hr[0, 0], 0, &h_sorted[0, 0])
                for p in range(active):
                    t = length[p] - 1 - step if reverse else step
                    memcpy(&out[t, order[p], 0], &h_sorted[p, 0], P * itemsize)

    np.asarray(h)[order_array] = h_sorted
    np.asarray(c)[order_array] = c_sorted
