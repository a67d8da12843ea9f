"""Stateless LSTM kernels: the whole time loop in C, without the GIL.

Each `def` entry takes typed memoryviews, checks shapes and BLAS limits with
the GIL held, allocates its scratch with NumPy (nothing shared between calls,
so concurrent calls from threads are safe), then runs one `with nogil:` block.
Validation of user input belongs to cylstm/lstm.py; the checks here only keep
a wrong call from reading out of bounds.
"""
import numpy as np
from cython cimport floating
from libc.limits cimport INT_MAX

from ._blas cimport gemm_nt, gemv_n


cdef extern from "_gates.h" nogil:
    void cylstm_cell_f32(Py_ssize_t H, const float *gates, const float *bias,
                         float *c, float *h_state, float *h_out) noexcept
    void cylstm_cell_f64(Py_ssize_t H, const double *gates, const double *bias,
                         double *c, double *h_state, double *h_out) noexcept
    const char *cylstm_simd_path() noexcept


# Bytes of gate pre-activations computed per input-projection gemm. Large
# enough that the gemm runs at full speed, small enough to stay in L2 while
# the time loop consumes it, and independent of the sequence length.
cdef enum:
    GATE_CHUNK_BYTES = 512 * 1024


def simd_path():
    """The instruction set the fused gate math runs with on this CPU."""
    return cylstm_simd_path().decode()


cdef inline void cell(Py_ssize_t H, const floating *gates, const floating *bias,
                      floating *c, floating *h_state,
                      floating *h_out) noexcept nogil:
    if floating is float:
        cylstm_cell_f32(H, gates, bias, c, h_state, h_out)
    else:
        cylstm_cell_f64(H, gates, bias, c, h_state, h_out)


cdef _check_blas_int(str what, Py_ssize_t value):
    if value > INT_MAX:
        raise ValueError(
            f"{what} = {value} exceeds the 32-bit BLAS limit {INT_MAX}")


def forward_layer(const floating[:, :, :] x,
                  const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh,
                  const floating[::1] bias,
                  floating[:, ::1] h,
                  floating[:, ::1] c,
                  floating[:, :, :] out,
                  bint gate_math=True):
    """One LSTM layer, one direction, over a whole sequence.

    x (T, B, D): time-major C-contiguous, or the (T, B, D) transpose of a
    C-contiguous batch-first (B, T, D) array. w_ih (4H, D), w_hh (4H, H),
    bias (4H,) = b_ih + b_hh, gate order i, f, g, o. h, c (B, H): the initial
    state on entry, the final state on return. out (T, B, H): any outer
    strides, contiguous rows. With gate_math=False only the BLAS calls run
    (the speed floor).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t H = w_hh.shape[1], G = 4 * H
    if w_ih.shape[0] != G or w_ih.shape[1] != D or w_hh.shape[0] != G:
        raise ValueError("w_ih must be (4H, D) and w_hh (4H, H)")
    if bias.shape[0] != G:
        raise ValueError("bias must be (4H,)")
    if (h.shape[0] != B or h.shape[1] != H or c.shape[0] != B
            or c.shape[1] != H):
        raise ValueError("h and c must be (B, H)")
    if out.shape[0] != T or out.shape[1] != B or out.shape[2] != H:
        raise ValueError("out must be (T, B, H)")
    if T == 0 or B == 0 or H == 0:
        return

    cdef Py_ssize_t itemsize = sizeof(floating)
    if (D > 1 and x.strides[2] != itemsize) or (H > 1 and out.strides[2] != itemsize):
        raise ValueError("x and out must have contiguous rows (last axis)")
    cdef Py_ssize_t stride_t = x.strides[0] // itemsize
    cdef Py_ssize_t stride_b = x.strides[1] // itemsize
    cdef bint time_major = ((B == 1 or stride_b == D)
                            and (T == 1 or stride_t == B * D))
    cdef bint batch_major = ((T == 1 or stride_t == D)
                             and (B == 1 or stride_b == T * D))
    if not (time_major or batch_major):
        raise ValueError("x must be C-contiguous time-major or batch-first")

    # Time steps per input-projection gemm: bounded scratch for any T.
    cdef Py_ssize_t chunk = max(1, min(T, GATE_CHUNK_BYTES // (B * G * itemsize)))
    _check_blas_int("input size", D)
    _check_blas_int("4 * hidden size", G)
    _check_blas_int("batch * 4 * hidden size", B * G)
    _check_blas_int("rows of one input-projection gemm", chunk * B)

    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, :, ::1] gates = np.empty((chunk, B, G), dtype=dtype)

    cdef Py_ssize_t n_chunks = (T + chunk - 1) // chunk
    cdef Py_ssize_t k, t0, steps, s, b
    with nogil:
        for k in range(n_chunks):
            t0 = k * chunk
            steps = min(chunk, T - t0)
            # gates[:steps] = x[t0:t0 + steps] @ w_ih.T
            if time_major:
                gemm_nt(<int> (steps * B), <int> G, <int> D, 1, &x[t0, 0, 0],
                        <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0, 0],
                        <int> G)
            else:
                for b in range(B):
                    gemm_nt(<int> steps, <int> G, <int> D, 1, &x[t0, b, 0],
                            <int> D, &w_ih[0, 0], <int> D, 0,
                            &gates[0, b, 0], <int> (B * G))
            for s in range(steps):
                # gates[s] += h @ w_hh.T
                if B == 1:
                    gemv_n(<int> G, <int> H, 1, &w_hh[0, 0], <int> H,
                           &h[0, 0], 1, &gates[s, 0, 0])
                else:
                    gemm_nt(<int> B, <int> G, <int> H, 1, &h[0, 0], <int> H,
                            &w_hh[0, 0], <int> H, 1, &gates[s, 0, 0], <int> G)
                if gate_math:
                    # c, h = cell(gates[s] + bias, c); out[t] = h
                    for b in range(B):
                        cell(H, &gates[s, b, 0], &bias[0], &c[b, 0], &h[b, 0],
                             &out[t0 + s, b, 0])
