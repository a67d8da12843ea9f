# Row-major BLAS for the LSTM kernels, over scipy.linalg.cython_blas.
#
# BLAS is column-major; a row-major (m, n) array with row stride ld is the
# column-major (n, m) array with the same ld, so each wrapper swaps operands
# instead of copying. One `noexcept nogil` wrapper per routine, fused over
# float/double, `const` cast away only at the call (scikit-learn's
# sklearn/utils/_cython_blas.pyx does the same). All sizes are C ints: the
# callers check them against INT_MAX before calling.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm_nt(int m, int n, int k, floating alpha,
                         const floating *a, int lda,
                         const floating *b, int ldb, floating beta,
                         floating *c, int ldc) noexcept nogil:
    """C := alpha * A @ B.T + beta * C, row-major A (m, k), B (n, k), C (m, n).

    Column-major this is C.T := alpha * B @ A.T + beta * C.T, i.e.
    gemm('T', 'N') with the operands swapped.
    """
    cdef char trans_b = b'T'
    cdef char trans_a = b'N'
    if floating is float:
        sgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)


cdef inline void gemv_n(int m, int n, floating alpha,
                        const floating *a, int lda,
                        const floating *x, floating beta,
                        floating *y) noexcept nogil:
    """y := alpha * A @ x + beta * y, row-major A (m, n), contiguous x and y.

    Row-major A is column-major A.T, so this is gemv('T') on (n, m).
    """
    cdef char trans = b'T'
    cdef int one = 1
    if floating is float:
        sgemv(&trans, &n, &m, &alpha, <float *> a, &lda, <float *> x, &one,
              &beta, y, &one)
    else:
        dgemv(&trans, &n, &m, &alpha, <double *> a, &lda, <double *> x, &one,
              &beta, y, &one)


cdef inline void gemm_nn(int m, int n, int k, floating alpha,
                         const floating *a, int lda,
                         const floating *b, int ldb, floating beta,
                         floating *c, int ldc) noexcept nogil:
    """C := alpha * A @ B + beta * C, row-major A (m, k), B (k, n), C (m, n).

    Column-major: C.T := alpha * B.T @ A.T + beta * C.T, gemm('N', 'N') swapped.
    """
    cdef char no = b'N'
    if floating is float:
        sgemm(&no, &no, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&no, &no, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)


cdef inline void gemm_tn(int m, int n, int k, floating alpha,
                         const floating *a, int lda,
                         const floating *b, int ldb, floating beta,
                         floating *c, int ldc) noexcept nogil:
    """C := alpha * A.T @ B + beta * C, row-major A (k, m), B (k, n), C (m, n).

    Column-major: C.T := alpha * B.T @ A + beta * C.T, gemm('N', 'T') swapped.
    """
    cdef char no = b'N'
    cdef char trans = b'T'
    if floating is float:
        sgemm(&no, &trans, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&no, &trans, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)


cdef inline void gemv_t(int m, int n, floating alpha,
                        const floating *a, int lda,
                        const floating *x, floating beta,
                        floating *y) noexcept nogil:
    """y := alpha * A.T @ x + beta * y, row-major A (m, n), contiguous x (m) and y (n).

    Row-major A is column-major A.T (n, m), so this is gemv('N') on it.
    """
    cdef char no = b'N'
    cdef int one = 1
    if floating is float:
        sgemv(&no, &n, &m, &alpha, <float *> a, &lda, <float *> x, &one,
              &beta, y, &one)
    else:
        dgemv(&no, &n, &m, &alpha, <double *> a, &lda, <double *> x, &one,
              &beta, y, &one)
