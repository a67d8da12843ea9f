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
from ._validation import ALIGNMENT, aligned_copy


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
    if (G != 4 * H or w_ih.shape[1] != D or w_hh.shape[0] != G or w_hh.shape[1] != P
            or (projected and w_hr.shape[1] != H) or bias.shape[0] != G
            or h.shape[0] != B or h.shape[1] != P or c.shape[0] != B or c.shape[1] != H
            or out.shape[0] != T or out.shape[1] != B or out.shape[2] != P):
        raise ValueError(
            f"shapes do not fit one LSTM layer: x {tuple(x.shape)[:3]}, "
            f"w_ih {tuple(w_ih.shape)[:2]}, w_hh {tuple(w_hh.shape)[:2]}, "
            f"bias {tuple(bias.shape)[:1]}, h {tuple(h.shape)[:2]}, c {tuple(c.shape)[:2]}, "
            f"out {tuple(out.shape)[:3]}")
    cdef Py_ssize_t itemsize = sizeof(floating)
    if (D > 1 and x.strides[2] != itemsize) or (P > 1 and out.strides[2] != itemsize):
        raise ValueError("x and out must have contiguous rows (last axis)")
    if T == 0 or B == 0 or H == 0:
        return
    dtype = np.float32 if floating is float else np.float64

    # Per-step BLAS time at batch 1 varied up to 1.8x with the alignment of
    # the recurrent weights: read them from a cache-line aligned copy.
    cdef const floating[:, ::1] w_hh_aligned = w_hh
    if <size_t> &w_hh[0, 0] % ALIGNMENT:
        w_hh_aligned = aligned_copy(w_hh, dtype)
    cdef const floating *w_hh_ptr = &w_hh_aligned[0, 0]

    # With lengths, rows run sorted by length, longest first, so the rows still
    # running at any step are a prefix: padded steps cost nothing (PyTorch's
    # packed batches). Without, order and length are identity and T.
    cdef const Py_ssize_t *order = NULL
    cdef const Py_ssize_t *length = NULL
    cdef Py_ssize_t[::1] order_view, length_view
    cdef Py_ssize_t longest = T
    h_state, c_state = h, c
    if lengths is not None:
        length_array = np.asarray(lengths, dtype=np.intp)
        if length_array.shape != (B,) or length_array.min() < 0 or length_array.max() > T:
            raise ValueError(f"lengths must be (B,) = ({B},) in [0, {T}]")
        order_view = np.argsort(-length_array, kind="stable")
        length_view = np.ascontiguousarray(length_array[order_view])
        order, length, longest = &order_view[0], &length_view[0], length_view[0]
        h_state = np.asarray(h)[order_view]
        c_state = np.asarray(c)[order_view]
    cdef floating[:, ::1] h_sorted = h_state
    cdef floating[:, ::1] c_sorted = c_state
    if longest == 0:
        return

    # The input projection reads x in place when the rows of a time chunk are
    # one contiguous block in processing order; otherwise each chunk is first
    # gathered into that order.
    cdef Py_ssize_t stride_t = x.strides[0] // itemsize
    cdef Py_ssize_t stride_b = x.strides[1] // itemsize
    cdef bint gather = not (
        lengths is None and not reverse
        and (B == 1 or stride_b == D) and (T == 1 or stride_t == B * D))

    # Time steps per input-projection gemm: bounded scratch for any T.
    cdef Py_ssize_t chunk = max(1, min(longest, GATE_CHUNK_BYTES // (B * G * itemsize)))
    if D > INT_MAX or G > INT_MAX or chunk * B > INT_MAX:
        raise ValueError(
            f"input size {D}, 4 * hidden size {G} or batch size {B} exceeds the "
            f"32-bit BLAS limit {INT_MAX}")

    cdef floating[:, ::1] gates = np.empty((chunk * B, G), dtype=dtype)
    cdef floating *x_chunk = NULL
    cdef floating *h_cell = NULL
    cdef floating[:, ::1] x_chunk_view, h_cell_view  # own the scratch below
    if gather:
        x_chunk_view = np.zeros((chunk * B, D), dtype=dtype)
        x_chunk = &x_chunk_view[0, 0]
    if projected:
        h_cell_view = np.zeros((B, H), dtype=dtype)
        h_cell = &h_cell_view[0, 0]

    cdef Py_ssize_t n_chunks = (longest + chunk - 1) // chunk
    cdef Py_ssize_t k, first, steps, rows, active, s, step, p, t, row
    cdef floating *h_new
    with nogil:
        rows = B  # rows still running at the current step
        for k in range(n_chunks):
            first = k * chunk
            steps = min(chunk, longest - first)
            while length != NULL and length[rows - 1] <= first:
                rows -= 1
            # gates[s * rows + p] = x[t(p, first + s), order[p]] @ w_ih.T
            if gather:
                for s in range(steps):
                    step = first + s
                    for p in range(rows):
                        if length == NULL or length[p] > step:
                            t = _time(step, p, length, T, reverse)
                            row = order[p] if order != NULL else p
                            memcpy(x_chunk + (s * rows + p) * D, &x[t, row, 0], D * itemsize)
                gemm_nt(<int> (steps * rows), <int> G, <int> D, 1, x_chunk,
                        <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0], <int> G)
            else:
                gemm_nt(<int> (steps * B), <int> G, <int> D, 1, &x[first, 0, 0],
                        <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0], <int> G)

            active = rows
            for s in range(steps):
                step = first + s
                while length != NULL and length[active - 1] <= step:
                    active -= 1
                # gates[s, :active] += h[:active] @ w_hh.T
                matmul_nt(<int> active, <int> G, <int> P, &h_sorted[0, 0],
                          w_hh_ptr, 1, &gates[s * rows, 0])
                if gate_math:
                    # c, h = cell(gates + bias, c)
                    for p in range(active):
                        h_new = h_cell + p * H if projected else &h_sorted[p, 0]
                        cell(H, &gates[s * rows + p, 0], &bias[0], &c_sorted[p, 0], h_new)
                if projected:
                    # h[:active] = h_cell[:active] @ w_hr.T
                    matmul_nt(<int> active, <int> P, <int> H, h_cell, &w_hr[0, 0], 0,
                              &h_sorted[0, 0])
                if gate_math:
                    # out[t] = h
                    for p in range(active):
                        t = _time(step, p, length, T, reverse)
                        row = order[p] if order != NULL else p
                        memcpy(&out[t, row, 0], &h_sorted[p, 0], P * itemsize)

    if order != NULL:
        np.asarray(h)[order_view] = h_sorted
        np.asarray(c)[order_view] = c_sorted


cdef inline Py_ssize_t _time(Py_ssize_t step, Py_ssize_t p, const Py_ssize_t *length,
                             Py_ssize_t T, bint reverse) noexcept nogil:
    """The time index that row p (in processing order) reads at `step`."""
    if not reverse:
        return step
    return (length[p] if length != NULL else T) - 1 - step

