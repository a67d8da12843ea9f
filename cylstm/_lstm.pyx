"""Stateless LSTM kernels: the whole time loop in C, without the GIL.

Each `def` entry takes typed memoryviews, checks shapes and BLAS limits with
the GIL held, allocates its scratch with NumPy (nothing shared between calls,
so concurrent calls from threads are safe), then runs one `with nogil:` block.
Validation of user input belongs to cylstm/_walk.py and cylstm/model.py; the checks here only keep
a wrong call from reading or writing out of bounds.
"""
import numpy as np
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset

from ._blas cimport gemm_nn, gemm_nt, gemm_tn, gemv_n, gemv_t
from ._validation import ALIGNMENT, aligned_copy


cdef extern from "_gates.h" nogil:
    ctypedef struct cylstm_gate_math_f32:
        void (*cell)(Py_ssize_t H, const float *gates, const float *bias, float *c, float *h,
                     float *act) noexcept nogil
        void (*cell_columns)(Py_ssize_t H, Py_ssize_t n, const float *gates,
                             Py_ssize_t ld_gates, const float *bias, float *c, float *h,
                             float *act, Py_ssize_t ld_state) noexcept nogil
        void (*cell_output)(Py_ssize_t H, const float *act, const float *c,
                            float *m) noexcept nogil
        void (*cell_backward)(Py_ssize_t H, float *act, const float *c, const float *c_prev,
                              const float *dh, float *dc) noexcept nogil
    ctypedef struct cylstm_gate_math_f64:
        void (*cell)(Py_ssize_t H, const double *gates, const double *bias, double *c,
                     double *h, double *act) noexcept nogil
        void (*cell_columns)(Py_ssize_t H, Py_ssize_t n, const double *gates,
                             Py_ssize_t ld_gates, const double *bias, double *c, double *h,
                             double *act, Py_ssize_t ld_state) noexcept nogil
        void (*cell_output)(Py_ssize_t H, const double *act, const double *c,
                            double *m) noexcept nogil
        void (*cell_backward)(Py_ssize_t H, double *act, const double *c,
                              const double *c_prev, const double *dh,
                              double *dc) noexcept nogil
    ctypedef struct cylstm_gate_math:
        const char *name
        cylstm_gate_math_f32 f32
        cylstm_gate_math_f64 f64
    const cylstm_gate_math *cylstm_gate_maths
    int CYLSTM_GATE_MATH_PATHS
    int cylstm_gate_math_runs(int k) noexcept


cdef extern from "_cell_variants.h" nogil:
    ctypedef struct cylstm_variant:
        int code[3]
        double alpha[3]
        double beta[3]
        double clip
        int input_forget
        const void *peephole
    ctypedef struct cylstm_variant_math_f32:
        void (*cell)(Py_ssize_t H, const cylstm_variant *v, const float *gates,
                     const float *bias, float *c, float *h, float *act) noexcept nogil
        void (*cell_columns)(Py_ssize_t H, Py_ssize_t n, const cylstm_variant *v,
                             const float *gates, Py_ssize_t ld_gates, const float *bias,
                             float *c, float *h, float *act,
                             Py_ssize_t ld_state) noexcept nogil
        void (*cell_output)(Py_ssize_t H, const cylstm_variant *v, const float *act,
                            const float *c, float *m) noexcept nogil
        void (*cell_backward)(Py_ssize_t H, const cylstm_variant *v, float *act,
                              const float *c, const float *c_prev, const float *dh,
                              float *dc, float *grad_peephole) noexcept nogil
    ctypedef struct cylstm_variant_math_f64:
        void (*cell)(Py_ssize_t H, const cylstm_variant *v, const double *gates,
                     const double *bias, double *c, double *h, double *act) noexcept nogil
        void (*cell_columns)(Py_ssize_t H, Py_ssize_t n, const cylstm_variant *v,
                             const double *gates, Py_ssize_t ld_gates, const double *bias,
                             double *c, double *h, double *act,
                             Py_ssize_t ld_state) noexcept nogil
        void (*cell_output)(Py_ssize_t H, const cylstm_variant *v, const double *act,
                            const double *c, double *m) noexcept nogil
        void (*cell_backward)(Py_ssize_t H, const cylstm_variant *v, double *act,
                              const double *c, const double *c_prev, const double *dh,
                              double *dc, double *grad_peephole) noexcept nogil
    ctypedef struct cylstm_variant_math:
        cylstm_variant_math_f32 f32
        cylstm_variant_math_f64 f64
    const cylstm_variant_math *cylstm_variant_maths


cdef enum:
    # Bytes of gate pre-activations computed per input-projection gemm. Large
    # enough for the gemm to run at full speed, small enough to stay in L2
    # while the time loop consumes it, and independent of the sequence length.
    GATE_CHUNK_BYTES = 512 * 1024
    MIN_GEMM_ROWS = 256
    # Bytes of the weight gradients' operand [x | h_prev | 1] per gemm in the
    # backward pass: bounded scratch for any T (128 KiB to all of it ran alike).
    WEIGHT_CHUNK_BYTES = 256 * 1024
    # Steps from which a batch-1 call pays for transposing w_hh (see below):
    # the copy costs about as much as 50-60 steps save.
    TRANSPOSE_MIN_STEPS = 128
    # Batch size from which forward_layer keeps gates and state in the column
    # layout, a batch row per column. With the batch as BLAS's M and w_hh as
    # the second operand, OpenBLAS ran the per-step product 1.4-1.5x faster
    # at (B, H) = (32, 256), 1.1-1.2x at (64, 512), 1.03-1.08x at (256, 256);
    # whole layers ran 1.1-2.2x faster at every B from 2 to 32 (H = 64, 256).
    # A single row stays in the row layout, where the product is a gemv.
    COLUMN_MIN_BATCH = 2
    # Batch rows moved together between the row and the column layout.
    ROW_BLOCK = 8


# For tests and benchmarks: the batch size from which the column layout runs.
COLUMN_LAYOUT_MIN_BATCH = COLUMN_MIN_BATCH


# -- the gate math's SIMD paths -------------------------------------------------
# Each path of _gates.h is compiled for one instruction set; the kernels run
# the one chosen at import (the best this CPU runs, or the environment
# variable SIMD_ENVIRONMENT_VARIABLE's) unless a call names another.

SIMD_ENVIRONMENT_VARIABLE = "CYLSTM_SIMD"
#: Every path this build has, from the most portable to the fastest.
SIMD_PATHS = tuple(cylstm_gate_maths[k].name.decode() for k in range(CYLSTM_GATE_MATH_PATHS))


def simd_paths():
    """The paths this CPU runs, fastest first."""
    return tuple(SIMD_PATHS[k] for k in reversed(range(CYLSTM_GATE_MATH_PATHS))
                 if cylstm_gate_math_runs(k))


cdef int _path_index(name) except -1:
    """The index of a path by its name or its first word ("avx2", "sse2")."""
    for k in range(CYLSTM_GATE_MATH_PATHS):
        if name == SIMD_PATHS[k] or name == SIMD_PATHS[k].split("+")[0].split(" ")[0]:
            if not cylstm_gate_math_runs(k):
                raise ValueError(f"simd path {name!r} is compiled in but this CPU cannot "
                                 f"run it; it runs {simd_paths()}")
            return k
    raise ValueError(f"simd must be one of {SIMD_PATHS} (or their first word), got {name!r}")


def _default_path():
    """The path at import: CYLSTM_SIMD's if it names one this CPU runs, else the best."""
    import os
    import warnings
    wanted = os.environ.get(SIMD_ENVIRONMENT_VARIABLE)
    if wanted:
        try:
            return _path_index(wanted)
        except ValueError as exc:
            warnings.warn(f"cylstm: {SIMD_ENVIRONMENT_VARIABLE}: {exc}; using "
                          f"{simd_paths()[0]!r}", RuntimeWarning, stacklevel=2)
    return SIMD_PATHS.index(simd_paths()[0])


# Set once here and only read afterwards: kernels never change it.
cdef const cylstm_gate_math *_DEFAULT_MATH = &cylstm_gate_maths[_default_path()]


def simd_path():
    """The path the gate math runs with by default in this process."""
    return _DEFAULT_MATH.name.decode()


cdef const cylstm_gate_math *_selected_math(simd, bint enabled) except? NULL:
    """The path a call runs: None for the default; NULL for no gate math at all."""
    if not enabled:
        return NULL
    if simd is None:
        return _DEFAULT_MATH
    return &cylstm_gate_maths[_path_index(simd)]


cdef inline void cell(const cylstm_gate_math *math, Py_ssize_t H, const floating *gates,
                      const floating *bias, floating *c, floating *h,
                      floating *act) noexcept nogil:
    if floating is float:
        math.f32.cell(H, gates, bias, c, h, act)
    else:
        math.f64.cell(H, gates, bias, c, h, act)


cdef inline void cell_columns(const cylstm_gate_math *math, Py_ssize_t H, Py_ssize_t n,
                              const floating *gates, Py_ssize_t ld_gates,
                              const floating *bias, floating *c, floating *h, floating *act,
                              Py_ssize_t ld_state) noexcept nogil:
    if floating is float:
        math.f32.cell_columns(H, n, gates, ld_gates, bias, c, h, act, ld_state)
    else:
        math.f64.cell_columns(H, n, gates, ld_gates, bias, c, h, act, ld_state)


cdef inline void cell_output(const cylstm_gate_math *math, Py_ssize_t H, const floating *act,
                             const floating *c, floating *m) noexcept nogil:
    if floating is float:
        math.f32.cell_output(H, act, c, m)
    else:
        math.f64.cell_output(H, act, c, m)


cdef inline void cell_backward(const cylstm_gate_math *math, Py_ssize_t H, floating *act,
                               const floating *c, const floating *c_prev,
                               const floating *dh, floating *dc) noexcept nogil:
    if floating is float:
        math.f32.cell_backward(H, act, c, c_prev, dh, dc)
    else:
        math.f64.cell_backward(H, act, c, c_prev, dh, dc)


# The variants (cylstm/_cell_variants.h) where `variant` is not NULL, else the
# plain fused cell above, untouched.
cdef inline const cylstm_variant_math *_variant_path(
        const cylstm_gate_math *math) noexcept nogil:
    """The variant cells compiled for the same instruction set as `math`."""
    return &cylstm_variant_maths[math - cylstm_gate_maths]


cdef inline void any_cell(const cylstm_gate_math *math, const cylstm_variant *variant,
                          Py_ssize_t H, const floating *gates, const floating *bias,
                          floating *c, floating *h, floating *act) noexcept nogil:
    if variant == NULL:
        cell(math, H, gates, bias, c, h, act)
    elif floating is float:
        _variant_path(math).f32.cell(H, variant, gates, bias, c, h, act)
    else:
        _variant_path(math).f64.cell(H, variant, gates, bias, c, h, act)


cdef inline void any_cell_columns(const cylstm_gate_math *math, const cylstm_variant *variant,
                                  Py_ssize_t H, Py_ssize_t n, const floating *gates,
                                  Py_ssize_t ld_gates, const floating *bias, floating *c,
                                  floating *h, floating *act,
                                  Py_ssize_t ld_state) noexcept nogil:
    if variant == NULL:
        cell_columns(math, H, n, gates, ld_gates, bias, c, h, act, ld_state)
    elif floating is float:
        _variant_path(math).f32.cell_columns(H, n, variant, gates, ld_gates, bias, c, h, act,
                                             ld_state)
    else:
        _variant_path(math).f64.cell_columns(H, n, variant, gates, ld_gates, bias, c, h, act,
                                             ld_state)


cdef inline void any_cell_output(const cylstm_gate_math *math, const cylstm_variant *variant,
                                 Py_ssize_t H, const floating *act, const floating *c,
                                 floating *m) noexcept nogil:
    if variant == NULL:
        cell_output(math, H, act, c, m)
    elif floating is float:
        _variant_path(math).f32.cell_output(H, variant, act, c, m)
    else:
        _variant_path(math).f64.cell_output(H, variant, act, c, m)


cdef inline void any_cell_backward(const cylstm_gate_math *math, const cylstm_variant *variant,
                                   Py_ssize_t H, floating *act, const floating *c,
                                   const floating *c_prev, const floating *dh, floating *dc,
                                   floating *grad_peephole) noexcept nogil:
    if variant == NULL:
        cell_backward(math, H, act, c, c_prev, dh, dc)
    elif floating is float:
        _variant_path(math).f32.cell_backward(H, variant, act, c, c_prev, dh, dc, grad_peephole)
    else:
        _variant_path(math).f64.cell_backward(H, variant, act, c, c_prev, dh, dc, grad_peephole)


# Activation codes of cylstm/_cell_variants.h, by cylstm/_params.py's names.
_ACTIVATION_CODES = {
    "sigmoid": 0, "tanh": 1, "relu": 2, "affine": 3, "leaky_relu": 4, "thresholded_relu": 5,
    "scaled_tanh": 6, "hard_sigmoid": 7, "elu": 8, "softsign": 9, "softplus": 10}
_PLAIN_ACTIVATIONS = (("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0), ("tanh", 0.0, 0.0))


cdef bint _set_variant(cylstm_variant *variant, peephole, clip, bint input_forget,
                       activations) except -1:
    """Fill `variant` from the keyword arguments; False for the plain cell."""
    activations = _PLAIN_ACTIVATIONS if activations is None else tuple(
        (str(name), float(alpha), float(beta)) for name, alpha, beta in activations)
    if len(activations) != 3 or any(name not in _ACTIVATION_CODES for name, _, _ in activations):
        raise ValueError(f"activations must be 3 (name, alpha, beta) of "
                         f"{list(_ACTIVATION_CODES)}, got {activations!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be None or positive, got {clip!r}")
    if (peephole is None and clip is None and not input_forget
            and activations == _PLAIN_ACTIVATIONS):
        return False
    for k, (name, alpha, beta) in enumerate(activations):
        variant.code[k] = _ACTIVATION_CODES[name]
        variant.alpha[k], variant.beta[k] = alpha, beta
    variant.clip = float("inf") if clip is None else clip
    variant.input_forget = input_forget
    return True


cdef object _variant_peephole(cylstm_variant *options, const cylstm_variant **variant,
                              peephole, clip, bint input_forget, activations, Py_ssize_t H,
                              dtype):
    """Set *variant to options (filled) for a variant cell, else leave it NULL;
    return the peephole weights the variant reads (zeros without peepholes),
    which the caller keeps alive for the call."""
    if not _set_variant(options, peephole, clip, input_forget, activations):
        return None
    if peephole is None:
        peephole = np.zeros(3 * H, dtype)
    elif np.shape(peephole) != (3 * H,):
        raise ValueError(f"peephole must be (3H,) = ({3 * H},), got {np.shape(peephole)}")
    cdef const float[::1] p32
    cdef const double[::1] p64
    if dtype == np.float32:
        p32 = peephole
        options.peephole = &p32[0]
    else:
        p64 = peephole
        options.peephole = &p64[0]
    variant[0] = options
    return peephole


cdef inline void matmul_nn(int m, int n, int k, const floating *a,
                           const floating *b, floating beta,
                           floating *c, bint gemm=False) noexcept nogil:
    """C := A @ B + beta * C, all contiguous: gemv when A is one row, unless gemm."""
    if m == 1 and not gemm:
        gemv_t(k, n, 1, b, n, a, beta, c)
    else:
        gemm_nn(m, n, k, 1, a, k, b, n, beta, c, n)


cdef inline void matmul_nt(int m, int n, int k, const floating *a,
                           const floating *b, floating beta,
                           floating *c, bint gemm=False) noexcept nogil:
    """C := A @ B.T + beta * C, all contiguous: gemv when A is one row, unless gemm."""
    if m == 1 and not gemm:
        gemv_n(n, k, 1, b, k, a, beta, c)
    else:
        gemm_nt(m, n, k, 1, a, k, b, k, beta, c, n)


# The ways to run the per-step product gates += h @ w_hh.T (see forward_layer),
# numbered for the C time loop.
STRATEGIES = ("rows", "rows-gemm", "rows-t", "rows-t-gemm", "columns", "columns-t")
cdef enum:
    ROWS, ROWS_GEMM, ROWS_T, ROWS_T_GEMM, COLUMNS, COLUMNS_T
_STRATEGY_NUMBERS = {name: number for number, name in enumerate(STRATEGIES)}


cdef inline bint _transposed(int strategy) noexcept nogil:
    """Whether `strategy` reads the transposed copy of w_hh."""
    return strategy == ROWS_T or strategy == ROWS_T_GEMM or strategy == COLUMNS_T


def default_strategy(Py_ssize_t steps, Py_ssize_t batch):
    """The rule a call without a plan follows (measured on an AMD EPYC, AVX2):
    a batch in the column layout; a single row by gemv, on w_hh.T from
    TRANSPOSE_MIN_STEPS steps (the copy costs about 50-60 steps' saving)."""
    if batch >= COLUMN_MIN_BATCH:
        return "columns"
    return "rows-t" if steps >= TRANSPOSE_MIN_STEPS else "rows"


cdef extern from "_race.h" nogil:
    ctypedef struct cylstm_race:
        int count
        int kinds[8]
        double best[8]
        int winner
    double cylstm_seconds()
    void cylstm_race_start(cylstm_race *race, int count, const int *kinds, int rounds,
                           double steps, double budget_fraction, double drop, double margin)
    int cylstm_race_kind(const cylstm_race *race)
    void cylstm_race_record(cylstm_race *race, double seconds)
    void cylstm_race_decide(cylstm_race *race)


cdef class Race:
    """The settings and the outcome of one race of strategies inside a kernel
    call (forward_layer's `race`; the rules in _race.h). The first call given
    it races; a call given it again (or at once from another thread) runs its
    `strategy` unraced. After the race: `seconds`, {strategy: its fastest
    product in seconds} for every candidate (inf: left untried), and `winner`."""

    cdef readonly double budget_fraction, drop, margin
    cdef readonly int rounds
    cdef readonly bint claimed, done
    cdef readonly dict seconds
    cdef readonly object winner

    def __init__(self, double budget_fraction=0.03, double drop=2.0, double margin=0.1,
                 int rounds=4):
        if not (budget_fraction >= 0 and drop >= 1 and 0 <= margin < 1 and rounds >= 1):
            raise ValueError(f"bad race settings: budget_fraction {budget_fraction}, "
                             f"drop {drop}, margin {margin}, rounds {rounds}")
        self.budget_fraction, self.drop, self.margin = budget_fraction, drop, margin
        self.rounds = rounds
        self.claimed = self.done = False
        self.seconds = {}
        self.winner = None

    cdef bint claim(self):
        """True for the first caller only (the GIL makes this atomic)."""
        if self.claimed:
            return False
        self.claimed = True
        return True

    cdef void finish(self, const cylstm_race *race):
        self.seconds = {STRATEGIES[race.kinds[i]]: race.best[i] for i in range(race.count)}
        self.winner = STRATEGIES[race.winner]
        self.done = True


def _simulate_race(rule, Py_ssize_t batch, bint transposed_copy, double steps, Race settings,
                   trial_seconds):
    """For tests: run _race.h's rules with trial_seconds(strategy, trial) as the
    clock's answer for each trial. Returns (winner, [(strategy, seconds), ...])."""
    cdef cylstm_race race
    cdef int kinds[8]
    cylstm_race_start(&race, _race_candidates(_STRATEGY_NUMBERS[rule], batch, transposed_copy,
                                              kinds),
                      kinds, settings.rounds, steps, settings.budget_fraction, settings.drop,
                      settings.margin)
    trials = []
    while race.winner < 0:
        name = STRATEGIES[cylstm_race_kind(&race)]
        seconds = trial_seconds(name, len(trials))
        trials.append((name, seconds))
        cylstm_race_record(&race, seconds)
    return STRATEGIES[race.winner], trials


cdef int _race_candidates(int rule, Py_ssize_t batch, bint transposed_copy, int *kinds):
    """The strategies a race tries, the rule's first; returns how many. One row:
    every row-layout product and the column layout's (the same gemm, N = 1);
    the transposed ones only when the call makes the copy anyway. A batch:
    w_hh or its transposed copy in the rule's layout (the gemv/gemm choice
    does not exist there)."""
    cdef int count = 1, k
    kinds[0] = rule
    if batch == 1:
        for k in (ROWS, ROWS_GEMM, ROWS_T, ROWS_T_GEMM, COLUMNS):
            if k != rule and (transposed_copy or not _transposed(k)):
                kinds[count] = k
                count += 1
    elif rule >= COLUMNS:
        kinds[count] = COLUMNS_T if rule == COLUMNS else COLUMNS
        count += 1
    else:
        kinds[count] = ROWS_T if rule == ROWS or rule == ROWS_GEMM else ROWS
        count += 1
    return count


def default_chunk_bytes():
    """Bytes of gate pre-activations per input-projection gemm without a plan."""
    return GATE_CHUNK_BYTES


def forward_layer(const floating[:, :, :] x,
                  const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh,
                  const floating[::1] bias,
                  floating[:, ::1] h,
                  floating[:, ::1] c,
                  floating[:, :, :] out,
                  *,
                  const floating[:, ::1] w_hr=None,
                  const floating[::1] bias_hh=None,
                  lengths=None,
                  bint reverse=False,
                  floating[:, :, ::1] keep_act=None,
                  floating[:, :, ::1] keep_c=None,
                  const floating[:, ::1] h_mask=None,
                  strategy=None,
                  chunk_bytes=None,
                  Race race=None,
                  simd=None,
                  peephole=None,
                  clip=None,
                  bint input_forget=False,
                  activations=None,
                  bint _gate_math=True):
    """One LSTM layer, one direction, over a whole batch of sequences.

    x (T, B, D): any outer strides, contiguous rows. w_ih (4H, D), w_hh
    (4H, P), bias (4H,) = b_ih + b_hh, gate order i, f, g, o; w_hr (P, H)
    projects h (LSTMP), P = H without it. h (B, P) and c (B, H) hold the
    initial state on entry and the final state on return. out (T, B, P): any
    outer strides, contiguous rows; only valid steps are written.

    bias_hh (4H,), if given, is added to bias here (b_ih + b_hh): a NumPy add
    before each call cost the model call about 1% at config a (AMD EPYC).

    lengths (B,) ints in [0, T]: row b runs steps 0 .. lengths[b] - 1 and its
    final state is the one after its last valid step. reverse: each row runs
    backwards from its last valid step. simd: the gate math's path by name
    (one of simd_paths(); None: simd_path()). With _gate_math=False only the BLAS
    calls run (the speed floor).

    keep_act (T, B, 4H) and keep_c (T, B, H), given together, receive the gate
    activations i, f, g, o and the cell state of every valid step, for
    backward_layer.

    h_mask (B, P), for training only: recurrent dropout (Keras's). Every step
    multiplies h by it before the recurrent product, gates += (h * h_mask) @
    w_hh.T; out and the state stay the unmasked h.

    strategy: how the per-step product gates += h @ w_hh.T runs (all give the
    same numbers up to rounding): "rows" (gates a batch row per row; gemv on
    w_hh for one row, else gemm), "rows-gemm" (gemm even for one row),
    "rows-t" and "rows-t-gemm" (the same on a transposed copy of w_hh),
    "columns" (gates and state a batch row per column: gemm with the batch as
    BLAS's M and w_hh as the second operand) or "columns-t" (the same on the
    transposed copy). chunk_bytes: gate pre-activations per input-projection
    gemm. None: default_strategy() and default_chunk_bytes();
    cylstm/_plan.py chooses per shape and machine.

    race, a Race not yet claimed: `strategy` is the rule's, and the call's
    first steps race it against the other products it could run (one row:
    every row-layout product and the column layout's; a batch: w_hh or its
    transposed copy in the strategy's layout), one step each, then run the
    winner (cylstm/_race.h). Returns the winner's name when it raced, else None.

    The cell's variants (ONNX LSTM; cylstm/_cell_variants.h): peephole (3H,)
    p_i, p_f, p_o; clip, a positive bound on every pre-activation;
    input_forget (f = 1 - i); activations, three (name, alpha, beta) for the
    gates, the candidate and the cell output (cylstm/_params.py ACTIVATIONS).
    With any of them keep_act receives the clipped pre-activations instead
    of the activations (backward_layer, given the same options, reads them so).
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
    cdef bint keep = keep_act is not None
    if keep and (keep_c is None or tuple(keep_act.shape)[:3] != (T, B, G)
                 or tuple(keep_c.shape)[:3] != (T, B, H)):
        raise ValueError("keep_act must be (T, B, 4H) and keep_c (T, B, H)")
    if h_mask is not None and tuple(h_mask.shape)[:2] != (B, P):
        raise ValueError(f"h_mask must be (B, P) = ({B}, {P}), got {tuple(h_mask.shape)[:2]}")
    cdef Py_ssize_t itemsize = sizeof(floating)
    if (D > 1 and x.strides[2] != itemsize) or (P > 1 and out.strides[2] != itemsize):
        raise ValueError("x and out must have contiguous rows (last axis)")
    if T == 0 or B == 0 or H == 0:
        return
    if not (_item_strides(x.strides, x.shape, 3, itemsize)
            and _item_strides(out.strides, out.shape, 3, itemsize)
            and <size_t> &x[0, 0, 0] % itemsize == 0 and <size_t> &out[0, 0, 0] % itemsize == 0):
        raise ValueError("x and out must be aligned, with strides that are non-negative "
                         "multiples of the item size (copy a record field or a reversed "
                         "view first)")
    cdef const cylstm_gate_math *math = _selected_math(simd, _gate_math)
    dtype = np.float32 if floating is float else np.float64
    cdef cylstm_variant variant_options
    cdef const cylstm_variant *variant = NULL
    kept_peephole = _variant_peephole(  # alive until the call returns
        &variant_options, &variant, peephole, clip, input_forget, activations, H, dtype)
    if bias_hh is not None and bias_hh.shape[0] != G:
        raise ValueError(f"bias_hh must have shape ({G},), got {tuple(bias_hh.shape)[:1]}")

    if strategy is None:
        strategy = default_strategy(T, B)
    # One dict lookup instead of string tests: this preamble runs at every step of a stream.
    number = _STRATEGY_NUMBERS.get(strategy) if isinstance(strategy, str) else None
    if number is None:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    cdef int kind = number
    cdef Py_ssize_t gate_chunk_bytes = GATE_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    if gate_chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")

    cdef bint transposed = _transposed(kind)
    cdef bint columns = kind >= COLUMNS

    # With lengths, rows run sorted by length, longest first, so the rows still
    # running at any step are a prefix: padded steps cost nothing (PyTorch's
    # packed batches). Without, order and length are identity and T.
    cdef const Py_ssize_t *order = NULL
    cdef const Py_ssize_t *length = NULL
    cdef Py_ssize_t[::1] order_view, length_view
    cdef Py_ssize_t longest = T
    cdef floating[:, ::1] h_sorted = h
    cdef floating[:, ::1] c_sorted = c
    if lengths is not None:
        order_view, length_view = _sorted_rows(lengths, B, T)
        order, length, longest = &order_view[0], &length_view[0], length_view[0]
        h_sorted = np.asarray(h)[order_view]
        c_sorted = np.asarray(c)[order_view]
    if longest == 0:
        return

    # The input projection reads x in place when the rows of a time chunk are
    # one contiguous block in processing order; otherwise each chunk is first
    # gathered into that order.
    cdef bint gather = not (
        lengths is None and not reverse
        and (B == 1 or x.strides[1] == D * itemsize)
        and (T == 1 or x.strides[0] == B * D * itemsize))

    # Time steps per input-projection gemm: bounded scratch for any T, and at
    # least MIN_GEMM_ROWS rows per gemm (one step of batch 64 ran the input
    # projection 1.6x slower than one big gemm).
    cdef Py_ssize_t chunk = max(gate_chunk_bytes // (B * G * itemsize),
                                (MIN_GEMM_ROWS + B - 1) // B)
    chunk = max(1, min(longest, chunk))
    if D > INT_MAX or G > INT_MAX or chunk * B > INT_MAX:
        raise ValueError(
            f"input size {D}, 4 * hidden size {G} or batch size {B} exceeds the "
            f"32-bit BLAS limit {INT_MAX}")

    # The race, if this call runs it (see Race); a single row races in the row layout.
    cdef cylstm_race race_state
    cdef cylstm_race *racing = NULL
    cdef int kinds[8]
    if race is not None and race.claim():
        transposed = transposed or B > 1 or longest >= TRANSPOSE_MIN_STEPS
        columns = columns and B > 1
        cylstm_race_start(&race_state, _race_candidates(kind, B, transposed, kinds), kinds,
                          race.rounds, longest, race.budget_fraction, race.drop, race.margin)
        racing = &race_state

    # Per-step BLAS time at batch 1 varied up to 1.8x with the alignment of
    # the recurrent weights: read them from a cache-line aligned copy, and a
    # transposed one when the strategy (or the race) needs it.
    cdef const floating[:, ::1] w_hh_aligned = w_hh
    cdef const floating[:, ::1] w_hh_t_aligned
    cdef const floating *w_hh_t_ptr = NULL
    if transposed:
        w_hh_t_aligned = aligned_copy(np.asarray(w_hh).T, dtype)
        w_hh_t_ptr = &w_hh_t_aligned[0, 0]
    if (racing != NULL or not transposed) and <size_t> &w_hh[0, 0] % ALIGNMENT:
        w_hh_aligned = aligned_copy(w_hh, dtype)
    cdef const floating *w_hh_ptr = &w_hh_aligned[0, 0]

    # gates holds a chunk's pre-activations: in the row layout, row s * rows + p
    # is batch row p of step s; in the column layout (G, steps * rows) the same
    # rows are columns (see COLUMN_MIN_BATCH). One more row holds b_ih + b_hh
    # when bias_hh is given (no allocation of its own).
    cdef floating[:, ::1] gates = np.empty((chunk * B + (bias_hh is not None), G), dtype=dtype)
    cdef floating *gates_base = &gates[0, 0]
    cdef Py_ssize_t j
    if bias_hh is not None:
        for j in range(G):
            gates[chunk * B, j] = bias[j] + bias_hh[j]
        bias = gates[chunk * B]
    cdef floating *x_chunk = NULL
    cdef floating *h_cell = NULL
    cdef floating *h_cols = NULL
    cdef floating *c_cols = NULL
    cdef floating *act_cols = NULL
    # own the scratch below
    cdef floating[:, ::1] x_chunk_view, h_cell_view, h_cols_view, c_cols_view, act_cols_view
    cdef floating[:, ::1] mask_view, h_masked_view
    cdef const floating *mask = NULL
    cdef floating *h_masked = NULL
    if h_mask is not None:
        # In processing order and in the layout of the state (see below), with
        # scratch for h * mask, the recurrent product's operand.
        mask_state = np.asarray(h_mask) if order == NULL else np.asarray(h_mask)[order_view]
        mask_view = np.ascontiguousarray(mask_state.T if columns else mask_state)
        h_masked_view = np.empty_like(mask_view)
        mask, h_masked = &mask_view[0, 0], &h_masked_view[0, 0]
    if gather:
        x_chunk_view = np.zeros((chunk * B, D), dtype=dtype)
        x_chunk = &x_chunk_view[0, 0]
    if projected:
        h_cell_view = np.zeros((H, B) if columns else (B, H), dtype=dtype)
        h_cell = &h_cell_view[0, 0]
    if columns:
        # The state, column layout: unit j of row p at [j, p].
        h_cols_view = np.ascontiguousarray(np.asarray(h_sorted).T)
        c_cols_view = np.ascontiguousarray(np.asarray(c_sorted).T)
        h_cols, c_cols = &h_cols_view[0, 0], &c_cols_view[0, 0]
        if keep:
            act_cols_view = np.empty((G, B), dtype=dtype)
            act_cols = &act_cols_view[0, 0]

    # Where each batch row's steps go: out, and the kept activations and cells.
    cdef Strided out_arr = Strided(<char *> &out[0, 0, 0], out.strides[0], out.strides[1])
    cdef Strided act_arr = Strided(NULL, 0, 0)
    cdef Strided c_arr = Strided(NULL, 0, 0)
    if keep:
        act_arr = Strided(<char *> &keep_act[0, 0, 0], keep_act.strides[0],
                          keep_act.strides[1])
        c_arr = Strided(<char *> &keep_c[0, 0, 0], keep_c.strides[0], keep_c.strides[1])
    cdef const floating *w_hr_ptr = &w_hr[0, 0] if projected else NULL
    cdef Walk walk = Walk(order, length, T, reverse)

    cdef Py_ssize_t n_chunks = (longest + chunk - 1) // chunk
    cdef Py_ssize_t k, first, steps, rows, s, step, p, t, row, ld
    cdef const floating *x_rows
    with nogil:
        rows = B  # rows still running at the current step
        for k in range(n_chunks):
            first = k * chunk
            steps = min(chunk, longest - first)
            while length != NULL and length[rows - 1] <= first:
                rows -= 1
            ld = steps * rows  # gate rows of this chunk (the column layout's row stride)
            # gates[s * rows + p] = x[t(p, first + s), order[p]] @ w_ih.T
            if gather:
                for s in range(steps):
                    step = first + s
                    for p in range(rows):
                        if length == NULL or length[p] > step:
                            t = _time(&walk, step, p)
                            row = order[p] if order != NULL else p
                            memcpy(x_chunk + (s * rows + p) * D, &x[t, row, 0], D * itemsize)
                x_rows = x_chunk
            else:
                x_rows = &x[first, 0, 0]
            if columns:  # the same, transposed: gates = w_ih @ x_rows.T
                gemm_nt(<int> G, <int> ld, <int> D, 1, &w_ih[0, 0], <int> D, x_rows, <int> D,
                        0, gates_base, <int> ld)
            else:
                matmul_nt(<int> ld, <int> G, <int> D, x_rows, &w_ih[0, 0], 0, gates_base)

            if columns:
                _steps_columns(&walk, first, steps, rows, H, P, B, kind, racing, w_hh_ptr,
                               w_hh_t_ptr, w_hr_ptr,
                               &bias[0], gates_base, h_cols, c_cols, h_cell, act_cols,
                               mask, h_masked, out_arr, act_arr, c_arr, math, variant)
            else:
                _steps_rows(&walk, first, steps, rows, H, P, kind, racing, w_hh_ptr,
                            w_hh_t_ptr, w_hr_ptr,
                            &bias[0], gates_base, &h_sorted[0, 0], &c_sorted[0, 0], h_cell,
                            mask, h_masked, out_arr, act_arr, c_arr, math, variant)

    if columns:
        np.asarray(h_sorted)[...] = h_cols_view.T
        np.asarray(c_sorted)[...] = c_cols_view.T
    if order != NULL:
        np.asarray(h)[order_view] = h_sorted
        np.asarray(c)[order_view] = c_sorted
    if racing != NULL:
        if racing.winner < 0:  # too few steps to finish: the trials so far decide
            cylstm_race_decide(racing)
        race.finish(racing)
        return race.winner
    return None


cdef struct Walk:
    # Which batch row runs at processing position p, and which time it reads.
    const Py_ssize_t *order  # the batch row at position p; NULL: p itself
    const Py_ssize_t *length  # row p's valid steps, longest first; NULL: all T
    Py_ssize_t T
    bint reverse  # each row runs backwards from its last valid step


cdef struct Strided:
    # A (T, B, n) array of floats with contiguous rows (base NULL: none).
    char *base
    Py_ssize_t stride_t, stride_b  # byte strides of its time and batch axes


cdef void _steps_columns(const Walk *walk, Py_ssize_t first, Py_ssize_t steps,
                         Py_ssize_t rows, Py_ssize_t H, Py_ssize_t P, Py_ssize_t B,
                         int kind, cylstm_race *race, const floating *w_hh,
                         const floating *w_hh_t, const floating *w_hr, const floating *bias,
                         floating *gates, floating *h_cols, floating *c_cols,
                         floating *h_cell, floating *act_cols, const floating *mask,
                         floating *h_masked, Strided out, Strided act, Strided cells,
                         const cylstm_gate_math *math,
                         const cylstm_variant *variant) noexcept nogil:
    """Steps first .. first + steps - 1 in the column layout: gates (4H, steps * rows),
    state h_cols (P, B) and c_cols (H, B), a batch row per column. The batch is
    BLAS's M and w_hh (kind COLUMNS) or w_hh_t (COLUMNS_T) its second operand.
    race, if not NULL, chooses each step's kind while it runs.
    mask (P, B), if not NULL, multiplies h before the product (into h_masked)."""
    cdef Py_ssize_t G = 4 * H, ld = steps * rows, active = rows, s, step, j, p
    cdef double started = 0
    cdef bint timed
    cdef floating *gates_step
    cdef const floating *h_rec = h_cols if mask == NULL else h_masked
    for s in range(steps):
        step = first + s
        while walk.length != NULL and walk.length[active - 1] <= step:
            active -= 1
        gates_step = gates + s * rows
        if mask != NULL:  # h_masked = h * mask (recurrent dropout)
            for j in range(P):
                for p in range(active):
                    h_masked[j * B + p] = h_cols[j * B + p] * mask[j * B + p]
        # gates[:, s * rows:][:, :active] += w_hh @ h[:active].T
        timed = race != NULL and race.winner < 0
        if race != NULL:
            kind = cylstm_race_kind(race)
        if timed:
            started = cylstm_seconds()
        if kind == COLUMNS_T:
            gemm_tn(<int> G, <int> active, <int> P, 1, w_hh_t, <int> G, h_rec, <int> B, 1,
                    gates_step, <int> ld)
        else:
            gemm_nn(<int> G, <int> active, <int> P, 1, w_hh, <int> P, h_rec, <int> B, 1,
                    gates_step, <int> ld)
        if timed:
            cylstm_race_record(race, cylstm_seconds() - started)
        if math != NULL:
            any_cell_columns(math, variant, H, active, gates_step, ld, bias, c_cols,
                             h_cell if w_hr != NULL else h_cols, act_cols, B)
            if act.base != NULL:  # keep_act[t] = act, keep_c[t] = c
                _columns_out(G, act_cols, B, act, walk, step, active)
                _columns_out(H, c_cols, B, cells, walk, step, active)
        if w_hr != NULL:
            # h[:active].T = w_hr @ h_cell[:active].T
            gemm_nn(<int> P, <int> active, <int> H, 1, w_hr, <int> H, h_cell, <int> B, 0,
                    h_cols, <int> B)
        if math != NULL:  # out[t] = h
            _columns_out(P, h_cols, B, out, walk, step, active)


cdef void _steps_rows(const Walk *walk, Py_ssize_t first, Py_ssize_t steps, Py_ssize_t rows,
                      Py_ssize_t H, Py_ssize_t P, int kind, cylstm_race *race,
                      const floating *w_hh, const floating *w_hh_t,
                      const floating *w_hr, const floating *bias, floating *gates,
                      floating *h, floating *c, floating *h_cell, const floating *mask,
                      floating *h_masked, Strided out, Strided act, Strided cells,
                      const cylstm_gate_math *math,
                      const cylstm_variant *variant) noexcept nogil:
    """Steps first .. first + steps - 1 in the row layout: gates (steps * rows, 4H),
    state h (rows, P) and c (rows, H). The product runs as `kind` says (see
    _row_product); race, if not NULL, chooses each step's kind while it runs.
    mask (rows, P), if not NULL, multiplies h before the product (into h_masked)."""
    cdef Py_ssize_t G = 4 * H, active = rows, s, step, p
    cdef double started = 0
    cdef bint timed
    cdef floating *gates_step
    cdef floating *h_new
    cdef const floating *h_rec = h if mask == NULL else h_masked
    for s in range(steps):
        step = first + s
        while walk.length != NULL and walk.length[active - 1] <= step:
            active -= 1
        gates_step = gates + s * rows * G
        if mask != NULL:  # h_masked = h * mask (recurrent dropout)
            for p in range(active * P):
                h_masked[p] = h[p] * mask[p]
        # gates[s, :active] += h[:active] @ w_hh.T
        timed = race != NULL and race.winner < 0
        if race != NULL:
            kind = cylstm_race_kind(race)
        if timed:
            started = cylstm_seconds()
        _row_product(kind, <int> active, <int> G, <int> P, h_rec, w_hh, w_hh_t, gates_step)
        if timed:
            cylstm_race_record(race, cylstm_seconds() - started)
        if math != NULL:  # c, h = cell(gates + bias, c)
            for p in range(active):
                h_new = h_cell + p * H if w_hr != NULL else h + p * P
                if act.base != NULL:
                    any_cell(math, variant, H, gates_step + p * G, bias, c + p * H, h_new,
                             <floating *> _row(act, walk, step, p))
                    memcpy(_row(cells, walk, step, p), c + p * H, H * sizeof(floating))
                else:
                    any_cell(math, variant, H, gates_step + p * G, bias, c + p * H, h_new,
                             <floating *> NULL)
        if w_hr != NULL:
            # h[:active] = h_cell[:active] @ w_hr.T
            matmul_nt(<int> active, <int> P, <int> H, h_cell, w_hr, 0, h)
        if math != NULL:  # out[t] = h
            for p in range(active):
                memcpy(_row(out, walk, step, p), h + p * P, P * sizeof(floating))


cdef inline void _row_product(int kind, int active, int G, int P, const floating *h,
                              const floating *w_hh, const floating *w_hh_t,
                              floating *gates) noexcept nogil:
    """gates (active, G) += h (active, P) @ w_hh.T in the row layout: on w_hh
    (ROWS: gemv for one row, ROWS_GEMM: gemm always), on its transposed copy
    w_hh_t (ROWS_T, ROWS_T_GEMM), or for one row as the column layout runs it
    (COLUMNS: gates (G, 1) += w_hh @ h.T, a gemm with N = 1)."""
    if kind == ROWS_T or kind == ROWS_T_GEMM:
        matmul_nn(active, G, P, h, w_hh_t, 1, gates, kind == ROWS_T_GEMM)
    elif kind == COLUMNS and active == 1:
        gemm_nn(G, 1, P, 1, w_hh, P, h, 1, 1, gates, 1)
    else:
        matmul_nt(active, G, P, h, w_hh, 1, gates, kind == ROWS_GEMM)


cdef inline void _columns_out(Py_ssize_t n, const floating *columns, Py_ssize_t ld,
                              Strided target, const Walk *walk, Py_ssize_t step,
                              Py_ssize_t active) noexcept nogil:
    """target[t(p), order[p], :n] = columns[:n, p] for the first `active` rows at `step`.
    ROW_BLOCK rows at a time, so that each cache line of columns is read once."""
    cdef floating *rows[ROW_BLOCK]
    cdef Py_ssize_t block, p0, q, j, count
    for block in range((active + ROW_BLOCK - 1) // ROW_BLOCK):
        p0 = block * ROW_BLOCK
        count = min(ROW_BLOCK, active - p0)
        for q in range(count):
            rows[q] = <floating *> _row(target, walk, step, p0 + q)
        for j in range(n):
            for q in range(count):
                rows[q][j] = columns[j * ld + p0 + q]


cdef inline void _rows_in(Py_ssize_t n, Strided source, const Walk *walk, Py_ssize_t step,
                          Py_ssize_t active, floating *columns, Py_ssize_t ld) noexcept nogil:
    """columns[:n, p] = source[t(p), order[p], :n]: the inverse of _columns_out."""
    cdef floating *rows[ROW_BLOCK]
    cdef Py_ssize_t block, p0, q, j, count
    for block in range((active + ROW_BLOCK - 1) // ROW_BLOCK):
        p0 = block * ROW_BLOCK
        count = min(ROW_BLOCK, active - p0)
        for q in range(count):
            rows[q] = <floating *> _row(source, walk, step, p0 + q)
        for j in range(n):
            for q in range(count):
                columns[j * ld + p0 + q] = rows[q][j]


cdef bint _item_strides(const Py_ssize_t *strides, const Py_ssize_t *shape, int ndim,
                        Py_ssize_t itemsize):
    """Whether every stride is a non-negative multiple of the item size, so that
    element addresses computed in items (and BLAS leading dimensions) are right.
    An axis of extent 1 is never stepped along: its stride does not matter."""
    cdef int axis
    for axis in range(ndim):
        if shape[axis] > 1 and (strides[axis] < 0 or strides[axis] % itemsize):
            return False
    return True


cdef inline bint _aligned(const void *data, Py_ssize_t itemsize) noexcept:
    return <size_t> data % itemsize == 0


cdef inline void *_row(Strided array, const Walk *walk, Py_ssize_t step,
                       Py_ssize_t p) noexcept nogil:
    """&array[t, row, 0] for the row at processing position p at `step`."""
    return (array.base + _time(walk, step, p) * array.stride_t
            + (walk.order[p] if walk.order != NULL else p) * array.stride_b)


cdef inline Py_ssize_t _time(const Walk *walk, Py_ssize_t step, Py_ssize_t p) noexcept nogil:
    """The time index that row p (in processing order) reads at `step`."""
    if not walk.reverse:
        return step
    return (walk.length[p] if walk.length != NULL else walk.T) - 1 - step


cdef void _weight_operand(const floating *x, Py_ssize_t D, const floating *h0,
                          Py_ssize_t h0_ld, Strided out, Py_ssize_t P, const floating *mask,
                          const Py_ssize_t *first_time, bint reverse, Py_ssize_t T,
                          Py_ssize_t B, Py_ssize_t first, Py_ssize_t rows,
                          floating *operand) noexcept nogil:
    """operand[k - first] = [x[t, b] | h_prev(t, b) | 1] for the flat rows k = t * B + b
    in first .. first + rows - 1: h_prev is what the recurrent product read at
    (t, b) (h * mask with recurrent dropout): h0 at the row's first step, else
    out one step earlier in processing order (zeros past a reversed row's
    length, where act is zero)."""
    cdef Py_ssize_t N = D + P + 1, k, t, b, j, previous
    cdef floating *target
    cdef const floating *h
    for k in range(first, first + rows):
        t, b = k // B, k % B
        target = operand + (k - first) * N
        memcpy(target, x + k * D, D * sizeof(floating))
        previous = t + 1 if reverse else t - 1
        if t == first_time[b]:
            h = h0 + b * h0_ld
        elif 0 <= previous < T and (not reverse or t < first_time[b]):
            h = <const floating *> (out.base + previous * out.stride_t + b * out.stride_b)
        else:
            h = NULL
        if h == NULL:
            memset(target + D, 0, P * sizeof(floating))
        elif mask == NULL:
            memcpy(target + D, h, P * sizeof(floating))
        else:
            for j in range(P):
                target[D + j] = h[j] * mask[b * P + j]
        target[D + P] = 1


cdef tuple _sorted_rows(lengths, Py_ssize_t B, Py_ssize_t T):
    """(order, sorted lengths): row indices by length, longest first (stable)."""
    length_array = np.asarray(lengths, dtype=np.intp)
    if length_array.shape != (B,) or length_array.min() < 0 or length_array.max() > T:
        raise ValueError(f"lengths must be (B,) = ({B},) in [0, {T}]")
    order = np.argsort(-length_array, kind="stable")
    return order, np.ascontiguousarray(length_array[order])


def backward_layer(const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih,
                   const floating[:, ::1] w_hh,
                   const floating[:, ::1] h0,
                   const floating[:, ::1] c0,
                   const floating[:, :, :] out,
                   floating[:, :, ::1] act,
                   const floating[:, :, ::1] cell_state,
                   const floating[:, :, :] grad_out,
                   const floating[:, ::1] grad_h_n,
                   const floating[:, ::1] grad_c_n,
                   floating[:, :, ::1] grad_x,
                   floating[:, ::1] grad_h0,
                   floating[:, ::1] grad_c0,
                   floating[:, ::1] grad_w_ih,
                   floating[:, ::1] grad_w_hh,
                   floating[::1] grad_bias,
                   *,
                   const floating[:, ::1] w_hr=None,
                   floating[:, ::1] grad_w_hr=None,
                   lengths=None,
                   bint reverse=False,
                   const floating[:, ::1] h_mask=None,
                   peephole=None,
                   floating[::1] grad_peephole=None,
                   clip=None,
                   bint input_forget=False,
                   activations=None,
                   simd=None):
    """Backpropagation through time for one layer and direction.

    The forward pass was forward_layer(x, w_ih, w_hh, ..., h0, c0, out,
    w_hr=w_hr, lengths=lengths, reverse=reverse, keep_act=act,
    keep_c=cell_state, h_mask=h_mask) on time-major contiguous x (T, B, D), with out (T, B, P)
    a view whose rows have one stride and that is zero past each row's length.
    act is overwritten with the gradient of the gate pre-activations, so this
    runs once per forward pass.

    grad_out (T, B, P), grad_h_n (B, P) and grad_c_n (B, H) are dL/d of out,
    h_n and c_n. grad_x (T, B, D) is ADDED to (both directions of a layer
    feed it); grad_h0, grad_c0 and the weight gradients are written. bias
    stands for b_ih and b_hh, whose gradients are equal. With h_mask the
    recurrent product read h * h_mask: grad_w_hh pairs with the masked h, and
    the gradient reaching h_{t-1} (and h0) is multiplied by the mask.

    peephole, clip, input_forget, activations: as the forward pass had them;
    grad_peephole (3H,) receives dL/dpeephole (needed with peephole).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t G = w_ih.shape[0], H = G // 4
    cdef bint projected = w_hr is not None
    cdef Py_ssize_t P = w_hr.shape[0] if projected else H
    cdef Py_ssize_t itemsize = sizeof(floating)
    if (G != 4 * H or tuple(w_ih.shape)[:2] != (G, D) or tuple(w_hh.shape)[:2] != (G, P)
            or (projected and (tuple(w_hr.shape)[:2] != (P, H) or grad_w_hr is None
                               or tuple(grad_w_hr.shape)[:2] != (P, H)))
            or tuple(h0.shape)[:2] != (B, P) or tuple(c0.shape)[:2] != (B, H)
            or tuple(out.shape)[:3] != (T, B, P) or tuple(act.shape)[:3] != (T, B, G)
            or tuple(cell_state.shape)[:3] != (T, B, H)
            or tuple(grad_out.shape)[:3] != (T, B, P)
            or tuple(grad_h_n.shape)[:2] != (B, P) or tuple(grad_c_n.shape)[:2] != (B, H)
            or tuple(grad_x.shape)[:3] != (T, B, D)
            or tuple(grad_h0.shape)[:2] != (B, P) or tuple(grad_c0.shape)[:2] != (B, H)
            or tuple(grad_w_ih.shape)[:2] != (G, D) or tuple(grad_w_hh.shape)[:2] != (G, P)
            or grad_bias.shape[0] != G
            or (h_mask is not None and tuple(h_mask.shape)[:2] != (B, P))):
        raise ValueError("shapes do not fit one LSTM layer's backward pass")
    if ((P > 1 and (out.strides[2] != itemsize or grad_out.strides[2] != itemsize))
            or (T > 1 and out.strides[0] != B * out.strides[1])):
        raise ValueError("out must have contiguous rows at one stride; grad_out contiguous rows")
    if not (_item_strides(out.strides, out.shape, 3, itemsize)
            and _item_strides(grad_out.strides, grad_out.shape, 3, itemsize)
            and _aligned(&x[0, 0, 0] if x.size else NULL, itemsize)
            and _aligned(&out[0, 0, 0] if out.size else NULL, itemsize)
            and _aligned(&grad_out[0, 0, 0] if grad_out.size else NULL, itemsize)):
        raise ValueError("x, out and grad_out must be aligned, with strides that are "
                         "non-negative multiples of the item size")
    if projected:
        np.asarray(grad_w_hr)[...] = 0
    if grad_peephole is not None:
        np.asarray(grad_peephole)[...] = 0
    np.asarray(grad_h0)[...] = grad_h_n
    np.asarray(grad_c0)[...] = grad_c_n
    if T == 0 or B == 0 or H == 0:  # else the last gemm writes them
        np.asarray(grad_w_ih)[...] = 0
        np.asarray(grad_w_hh)[...] = 0
        np.asarray(grad_bias)[...] = 0
        return
    if T * B > INT_MAX or G > INT_MAX or D > INT_MAX:
        raise ValueError(f"T * B = {T * B} or a layer size exceeds the 32-bit BLAS limit")
    cdef const cylstm_gate_math *math = _selected_math(simd, True)
    dtype = np.float32 if floating is float else np.float64
    cdef cylstm_variant variant_options
    cdef const cylstm_variant *variant = NULL
    kept_peephole = _variant_peephole(  # alive until the call returns
        &variant_options, &variant, peephole, clip, input_forget, activations, H, dtype)
    if peephole is not None and (grad_peephole is None or grad_peephole.shape[0] != 3 * H):
        raise ValueError("grad_peephole (3H,) must come with peephole")
    # dL/dpeephole, summed over rows and steps (a scratch without peepholes)
    cdef floating[::1] grad_peep = np.zeros(3 * H if variant != NULL else 1, dtype=dtype)

    cdef const Py_ssize_t *order = NULL
    cdef const Py_ssize_t *length = NULL
    cdef Py_ssize_t[::1] order_view, length_view
    cdef Py_ssize_t longest = T
    if lengths is not None:
        order_view, length_view = _sorted_rows(lengths, B, T)
        order, length, longest = &order_view[0], &length_view[0], length_view[0]
        dh_state = np.asarray(grad_h_n)[order_view]
        dc_state = np.asarray(grad_c_n)[order_view]
    else:
        dh_state = np.array(grad_h_n)
        dc_state = np.array(grad_c_n)
    # the mask in processing order, as dh's rows
    cdef floating[:, ::1] mask_view
    cdef const floating *mask = NULL
    if h_mask is not None:
        mask_view = np.ascontiguousarray(
            np.asarray(h_mask) if order == NULL else np.asarray(h_mask)[order_view])
        mask = &mask_view[0, 0]
    # dh, dc: dL/dh and dL/dc flowing back through the rows, in processing order
    cdef floating[:, ::1] dh = dh_state
    cdef floating[:, ::1] dc = dc_state
    # d_gates: d(pre-activations) of a step, rows (B, G) or, for a batch, in
    # forward_layer's column layout (G, B): then dh = d_gates @ w_hh runs as
    # dh.T = w_hh.T @ d_gates.T, the batch as BLAS's M, w_hh.T (a copy) as the
    # second operand, the orientation OpenBLAS runs fastest.
    cdef bint columns = B >= COLUMN_MIN_BATCH
    cdef floating[:, ::1] d_gates = np.empty((B, G), dtype=dtype)
    cdef floating *d_gates_cols = &d_gates[0, 0]
    cdef floating[:, ::1] w_hh_t_view, dh_cols_view  # own the scratch below
    cdef floating *w_hh_t = NULL
    cdef floating *dh_cols = NULL
    if columns:
        w_hh_t_view = aligned_copy(np.asarray(w_hh).T, dtype)
        dh_cols_view = np.empty((P, B), dtype=dtype)
        w_hh_t, dh_cols = &w_hh_t_view[0, 0], &dh_cols_view[0, 0]
    # The weight gradients' operand [x | h_prev | 1], a chunk of (t, b) rows at a
    # time (bounded scratch), and their product with act (see _weight_operand).
    cdef Py_ssize_t N = D + P + 1
    cdef Py_ssize_t chunk_rows = min(T * B, max(WEIGHT_CHUNK_BYTES // (N * itemsize),
                                                MIN_GEMM_ROWS))
    if N > INT_MAX:
        raise ValueError(f"input size {D} + output size {P} exceeds the 32-bit BLAS limit")
    cdef floating[:, ::1] operand = np.empty((chunk_rows, N), dtype=dtype)
    cdef floating[:, ::1] grad_all = np.empty((G, N), dtype=dtype)
    cdef Py_ssize_t[::1] first_time = np.zeros(B, dtype=np.intp)  # each row's first step
    if reverse:
        first_time = (np.full(B, T, dtype=np.intp) if lengths is None
                      else np.asarray(lengths, dtype=np.intp)) - 1
    cdef const floating[:, ::1] mask_rows_view  # h_mask by batch row, rows contiguous
    cdef const floating *mask_rows = NULL
    if h_mask is not None:
        mask_rows_view = np.ascontiguousarray(h_mask)
        mask_rows = &mask_rows_view[0, 0]
    cdef floating[:, ::1] m_view, dm_view
    cdef floating *m = NULL
    cdef floating *dm = &dh[0, 0]
    if projected:
        m_view = np.empty((B, H), dtype=dtype)
        dm_view = np.empty((B, H), dtype=dtype)
        m, dm = &m_view[0, 0], &dm_view[0, 0]

    cdef Walk walk = Walk(order, length, T, reverse)
    cdef Strided act_arr = Strided(<char *> &act[0, 0, 0], act.strides[0], act.strides[1])
    cdef Strided out_arr = Strided(<char *> &out[0, 0, 0], out.strides[0], out.strides[1])
    # dh as a Strided of one step: its rows are already in processing order.
    cdef Strided dh_arr = Strided(<char *> &dh[0, 0], 0, P * itemsize)
    cdef Walk in_order = Walk(NULL, NULL, 1, False)

    cdef Py_ssize_t active = 0, step, p, j, t, row, k, first, rows
    cdef const floating *c_prev
    cdef floating *dh_row
    cdef const floating *grad_row
    with nogil:
        for step in range(longest - 1, -1, -1):
            while active < B and (length == NULL or length[active] > step):
                active += 1
            # dh += grad_out at this step (rows of grad_out are contiguous)
            for p in range(active):
                t = _time(&walk, step, p)
                row = order[p] if order != NULL else p
                dh_row = &dh[p, 0]
                grad_row = &grad_out[t, row, 0]
                for j in range(P):
                    dh_row[j] += grad_row[j]
            if projected:
                # m = o * tanh(c); grad_w_hr += dh.T @ m; dm = dh @ w_hr
                for p in range(active):
                    t = _time(&walk, step, p)
                    row = order[p] if order != NULL else p
                    any_cell_output(math, variant, H, &act[t, row, 0],
                                    &cell_state[t, row, 0], m + p * H)
                gemm_tn(<int> P, <int> H, <int> active, 1, &dh[0, 0], <int> P, m, <int> H,
                        1, &grad_w_hr[0, 0], <int> H)
                matmul_nn(<int> active, <int> H, <int> P, &dh[0, 0], &w_hr[0, 0], 0, dm)
            # act[t] becomes d(pre-activations); dc flows to the previous step
            for p in range(active):
                t = _time(&walk, step, p)
                row = order[p] if order != NULL else p
                if step == 0:
                    c_prev = &c0[row, 0]
                else:
                    c_prev = &cell_state[_time(&walk, step - 1, p), row, 0]
                any_cell_backward(math, variant, H, &act[t, row, 0], &cell_state[t, row, 0],
                                  c_prev, dm + p * H, &dc[p, 0], &grad_peep[0])
                if not columns:
                    memcpy(&d_gates[p, 0], &act[t, row, 0], G * itemsize)
            # dh = d_gates @ w_hh: the gradient reaching the previous step's h
            if columns:
                if order == NULL:
                    # act[t] is one (B, G) block: BLAS reads it as d_gates.T in
                    # place, as fast as the gathered columns and without the copy
                    gemm_nt(<int> P, <int> B, <int> G, 1, w_hh_t, <int> G,
                            &act[_time(&walk, step, 0), 0, 0], <int> G, 0, dh_cols, <int> B)
                else:
                    _rows_in(G, act_arr, &walk, step, active, d_gates_cols, B)
                    gemm_nn(<int> P, <int> active, <int> G, 1, w_hh_t, <int> G, d_gates_cols,
                            <int> B, 0, dh_cols, <int> B)
                _columns_out(P, dh_cols, B, dh_arr, &in_order, 0, active)
            else:
                matmul_nn(<int> active, <int> P, <int> G, &d_gates[0, 0], &w_hh[0, 0], 0,
                          &dh[0, 0])
            if mask != NULL:  # the product read h * mask
                for p in range(active):
                    for j in range(P):
                        dh[p, j] *= mask[p * P + j]

        # Weight and input gradients: a few gemms over all steps at once.
        # act is zero at padded steps (the caller allocates it zeroed), so
        # every row (t, b) may take part.
        # grad_x += act @ w_ih
        gemm_nn(<int> (T * B), <int> D, <int> G, 1, &act[0, 0, 0], <int> G,
                &w_ih[0, 0], <int> D, 1, &grad_x[0, 0, 0], <int> D)
        # [grad_w_ih | grad_w_hh | grad_bias] = act.T @ [x | h_prev | 1]: one
        # gemm packs act once for all three (two gemms and a gemv took 1.08x
        # as long at (100, 32, 128, 256) and (50, 32, 64, 128), AMD EPYC)
        for k in range((T * B + chunk_rows - 1) // chunk_rows):
            first = k * chunk_rows
            rows = min(chunk_rows, T * B - first)
            _weight_operand(&x[0, 0, 0], D, &h0[0, 0], h0.strides[0] // itemsize, out_arr, P,
                            mask_rows, &first_time[0], reverse, T, B, first, rows,
                            &operand[0, 0])
            gemm_tn(<int> G, <int> N, <int> rows, 1, &act[0, 0, 0] + first * G, <int> G,
                    &operand[0, 0], <int> N, 0 if first == 0 else 1, &grad_all[0, 0], <int> N)
        for j in range(G):
            memcpy(&grad_w_ih[j, 0], &grad_all[j, 0], D * itemsize)
            memcpy(&grad_w_hh[j, 0], &grad_all[j, D], P * itemsize)
            grad_bias[j] = grad_all[j, D + P]

    if peephole is not None:
        np.asarray(grad_peephole)[...] = grad_peep
    if order != NULL:
        np.asarray(grad_h0)[order_view] = dh
        np.asarray(grad_c0)[order_view] = dc
    else:
        np.asarray(grad_h0)[...] = dh
        np.asarray(grad_c0)[...] = dc
