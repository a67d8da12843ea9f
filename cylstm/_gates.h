/* The fused LSTM cell update, one batch row at a time:
 *
 *     i, f, g, o = split(gates + bias)          (PyTorch gate order)
 *     c = sigmoid(f) * c + sigmoid(i) * tanh(g)
 *     h = sigmoid(o) * tanh(c)
 *
 * Written as plain loops over branch-free arithmetic so the compiler vectorises
 * them; libm's scalar expf/tanhf would stop that and cost 2-3x. The selects for
 * large |x| only vectorise (compare and blend) under -fno-trapping-math
 * (setup.py passes it): without it GCC keeps branches and the loops stay
 * scalar, 7x slower (no ymm instruction at all in the AVX2 clones). On x86-64
 * Linux with glibc, GCC >= 11 compiles each loop three times (AVX-512, AVX2+FMA,
 * baseline SSE2) and picks one at load time by CPUID (target_clones, an ifunc);
 * Clang does the same with AVX-512F / AVX2 / baseline clones (its resolver for
 * arch=x86-64-vN clones tests the CPU vendor, not the features). Everything else
 * (Arm64, where the vectoriser emits NEON; macOS, musl and Windows, which have
 * no ifunc; MSVC) compiles the plain loops once. GNU attributes appear only
 * under the GNU guard, so the header is ISO C99 with extensions off
 * (ci/compilers.sh compiles it so).
 */
#ifndef CYLSTM_GATES_H
#define CYLSTM_GATES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* GCC or Clang with GNU extensions on (-std=c99 turns them off: the plain path). */
#if defined(__GNUC__) && !defined(__STRICT_ANSI__)
#define CYLSTM_GNU 1
#else
#define CYLSTM_GNU 0
#endif

/* target_clones needs an ifunc: ELF with glibc (math.h above defined __GLIBC__). */
#if CYLSTM_GNU && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#if defined(__clang__) && __clang_major__ >= 14
#define CYLSTM_DISPATCH 2
#define CYLSTM_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#elif !defined(__clang__) && __GNUC__ >= 11
#define CYLSTM_DISPATCH 1
#define CYLSTM_SIMD_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef CYLSTM_DISPATCH
#define CYLSTM_DISPATCH 0
#define CYLSTM_SIMD_CLONES
#endif

#if CYLSTM_GNU
#define CYLSTM_INLINE static inline __attribute__((always_inline))
#define CYLSTM_ALIGN64 __attribute__((aligned(64)))
#elif defined(_MSC_VER)
#define CYLSTM_INLINE static __forceinline
#define CYLSTM_ALIGN64 __declspec(align(64))
#else
#define CYLSTM_INLINE static inline
#define CYLSTM_ALIGN64
#endif

/* MSVC's C has restrict only under /std:c11; __restrict always. Scoped to this
 * header: Windows headers use __declspec(restrict). */
#if defined(_MSC_VER) && !defined(__clang__)
#pragma push_macro("restrict")
#undef restrict
#define restrict __restrict
#endif

#define CYLSTM_BLOCK 64 /* units per block of the row-layout cell */

/* ---- float32: minimax rational tanh, |error| < 4e-7 on all of R ----
 * tanh(x) ~= x P(x^2) / Q(x^2), deg P = 3, deg Q = 4 (in x^2): minimax for the
 * absolute error on [0, 7.9] with float-rounded coefficients. For |x| > 7.9 the
 * result is selected as exactly +-1 (1 - tanh(7.9) = 2.8e-7); the rational is
 * still evaluated there and its value (maybe inf/inf) discarded. NaN compares
 * false, takes the rational path and propagates. sigmoid(x) = 0.5 + 0.5 tanh(x/2)
 * with the 1/2 and 1/4 folded into the coefficients (exact power-of-2 scaling).
 * Branch-free: GCC vectorises the selects as compare + blend. */
#define CYLSTM_TANH_P(t, s, k)                                                   \
    (((1.112528662e-05f * (k) * (s) * (s) * (s) * (t) +                          \
       2.921210835e-03f * (k) * (s) * (s)) * (t) +                               \
      1.289698035e-01f * (k) * (s)) * (t) + 1.0f * (k))
#define CYLSTM_TANH_Q(t, s)                                                      \
    ((((2.365701874e-07f * (s) * (s) * (s) * (s) * (t) +                         \
        2.345717076e-04f * (s) * (s) * (s)) * (t) +                              \
       2.369102463e-02f * (s) * (s)) * (t) + 4.623004496e-01f * (s)) * (t) +     \
     1.000000834e+00f)

CYLSTM_INLINE float cylstm_tanh_f(float x)
{
    const float t = x * x;
    const float y = x * CYLSTM_TANH_P(t, 1.0f, 1.0f) / CYLSTM_TANH_Q(t, 1.0f);
    return fabsf(x) > 7.9f ? copysignf(1.0f, x) : y;
}

CYLSTM_INLINE float cylstm_sigmoid_f(float x)
{
    const float t = x * x; /* tanh(x/2): t/4 folded in via s = 0.25 */
    const float y = x * CYLSTM_TANH_P(t, 0.25f, 0.25f) / CYLSTM_TANH_Q(t, 0.25f) + 0.5f;
    return fabsf(x) > 15.8f ? copysignf(0.5f, x) + 0.5f : y;
}

/* ---- float64: exp by range reduction, accurate to ~1e-16 ---- */

CYLSTM_INLINE double cylstm_exp_d(double x)
{
    /* exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2. */
    const double round_magic = 6755399441055744.0; /* 1.5 * 2^52 */
    x = x > 708.0 ? 708.0 : x; /* NaN falls through, as in cylstm_tanh_f */
    x = x < -708.0 ? -708.0 : x;
    const double shifted = x * 1.4426950408889634 + round_magic;
    const double n = shifted - round_magic;
    /* Cody-Waite: ln2 split in a high part exact in n * hi and a low part. */
    const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    /* Taylor series to r^13: truncation error below 1e-18 for |r| <= 0.347. */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n from the integer that round_magic left in the low mantissa bits.
       Shifted unsigned: for a NaN x the exponent is negative garbage (the
       result is NaN anyway), and shifting a negative int64_t is undefined. */
    int64_t bits, magic_bits;
    memcpy(&bits, &shifted, sizeof bits);
    memcpy(&magic_bits, &round_magic, sizeof magic_bits);
    const uint64_t scale_bits = (uint64_t) (bits - magic_bits + 1023) << 52;
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

CYLSTM_INLINE double cylstm_sigmoid_d(double x)
{
    return 1.0 / (1.0 + cylstm_exp_d(-x));
}

CYLSTM_INLINE double cylstm_tanh_d(double x)
{
    /* 1 - 2 / (exp(2x) + 1): absolute error ~1e-16, exact limits at +-inf. */
    return 1.0 - 2.0 / (cylstm_exp_d(2.0 * x) + 1.0);
}

/* ---- the fused cell functions, defined once for float and double ----
 *
 * cell:          the forward step of one batch row (the row layout).
 *   gates: the 4H pre-activations without bias; bias: b_ih + b_hh (4H);
 *   c: cell state (H), updated; h: where the new hidden state goes (H);
 *   act: NULL, or (4H) where i, f, g, o after their nonlinearities are kept
 *   for backpropagation.
 * cell_columns:  the forward step of n batch rows in the column layout, where
 *   a batch row is a column: gate unit k of row p is gates[k * ld_gates + p],
 *   unit j of c and h (and of act, as in cell, if act is not NULL) is at
 *   [j * ld_state + p]. Vectorised over the rows: this is the layout in which
 *   OpenBLAS runs the per-step product fastest (_lstm.pyx).
 * cell_output:   m = o * tanh(c) from kept act and c (the unprojected h).
 * cell_backward: one step of backpropagation through time.
 *   act: in, the kept i, f, g, o; out, the gradient of the pre-activations.
 *   c, c_prev: the cell state after and before the step; dh: dL/dh (before a
 *   projection); dc: in, dL/dc from later steps; out, dL/dc_prev.
 *
 * Both forward cells run two passes per block of CYLSTM_BLOCK elements: the
 * four activations (into act, or a local buffer), then c and h. A single fused
 * loop was latency-bound (one long chain of dependent operations per element)
 * and 1.5x slower. Both compute an element with the same operations, so every
 * layout, with or without act, gives the same numbers.
 */
#define CYLSTM_C_NEW(i, f, g, c_old) ((f) * (c_old) + (i) * (g))

/* Pass 1 and 2 over m elements: pre-activations gate_x[k] + bias_x(k) into
 * act_x[k]; then c[k] and h[k]. */
#define CYLSTM_CELL_PASSES(real, sigmoid, tanh_, m, bias_i, bias_f, bias_g, bias_o) \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                        \
        act_i[k] = sigmoid(gate_i[k] + (bias_i));                                \
        act_f[k] = sigmoid(gate_f[k] + (bias_f));                                \
        act_g[k] = tanh_(gate_g[k] + (bias_g));                                  \
        act_o[k] = sigmoid(gate_o[k] + (bias_o));                                \
    }                                                                            \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                        \
        const real c_new = CYLSTM_C_NEW(act_i[k], act_f[k], act_g[k], c_k[k]);   \
        c_k[k] = c_new;                                                          \
        h_k[k] = act_o[k] * tanh_(c_new);                                        \
    }

#define CYLSTM_DEFINE_CELLS(SUFFIX, real, sigmoid, tanh_)                        \
    CYLSTM_SIMD_CLONES                                                           \
    static void cylstm_cell_##SUFFIX(ptrdiff_t H, const real *restrict gates,    \
                                     const real *restrict bias, real *restrict c, \
                                     real *restrict h, real *restrict act)       \
    {                                                                            \
        CYLSTM_ALIGN64 real local[4][CYLSTM_BLOCK];                              \
        for (ptrdiff_t j0 = 0; j0 < H; j0 += CYLSTM_BLOCK) {                     \
            const ptrdiff_t m = H - j0 < CYLSTM_BLOCK ? H - j0 : CYLSTM_BLOCK;   \
            const real *restrict gate_i = gates + j0, *restrict gate_f = gate_i + H; \
            const real *restrict gate_g = gate_f + H, *restrict gate_o = gate_g + H; \
            const real *restrict bias_j = bias + j0;                             \
            real *restrict act_i = act ? act + j0 : local[0];                    \
            real *restrict act_f = act ? act_i + H : local[1];                   \
            real *restrict act_g = act ? act_f + H : local[2];                   \
            real *restrict act_o = act ? act_g + H : local[3];                   \
            real *restrict c_k = c + j0, *restrict h_k = h + j0;                 \
            CYLSTM_CELL_PASSES(real, sigmoid, tanh_, m, bias_j[k], bias_j[H + k], \
                               bias_j[2 * H + k], bias_j[3 * H + k])             \
        }                                                                        \
    }                                                                            \
                                                                                 \
    CYLSTM_SIMD_CLONES                                                           \
    static void cylstm_cell_columns_##SUFFIX(                                    \
        ptrdiff_t H, ptrdiff_t n, const real *restrict gates, ptrdiff_t ld_gates, \
        const real *restrict bias, real *restrict c, real *restrict h,           \
        real *restrict act, ptrdiff_t ld_state)                                  \
    {                                                                            \
        CYLSTM_ALIGN64 real local[4][CYLSTM_BLOCK];                              \
        for (ptrdiff_t j = 0; j < H; ++j) {                                      \
            const real bias_i = bias[j], bias_f = bias[H + j];                   \
            const real bias_g = bias[2 * H + j], bias_o = bias[3 * H + j];       \
            for (ptrdiff_t p0 = 0; p0 < n; p0 += CYLSTM_BLOCK) {                 \
                const ptrdiff_t m = n - p0 < CYLSTM_BLOCK ? n - p0 : CYLSTM_BLOCK; \
                const real *restrict gate_i = gates + j * ld_gates + p0;         \
                const real *restrict gate_f = gate_i + H * ld_gates;             \
                const real *restrict gate_g = gate_f + H * ld_gates;             \
                const real *restrict gate_o = gate_g + H * ld_gates;             \
                real *restrict act_i = act ? act + j * ld_state + p0 : local[0]; \
                real *restrict act_f = act ? act_i + H * ld_state : local[1];    \
                real *restrict act_g = act ? act_f + H * ld_state : local[2];    \
                real *restrict act_o = act ? act_g + H * ld_state : local[3];    \
                real *restrict c_k = c + j * ld_state + p0;                      \
                real *restrict h_k = h + j * ld_state + p0;                      \
                CYLSTM_CELL_PASSES(real, sigmoid, tanh_, m,                      \
                                   bias_i, bias_f, bias_g, bias_o)               \
            }                                                                    \
        }                                                                        \
    }                                                                            \
                                                                                 \
    CYLSTM_SIMD_CLONES                                                           \
    static void cylstm_cell_output_##SUFFIX(ptrdiff_t H, const real *restrict act, \
                                            const real *restrict c,              \
                                            real *restrict m)                    \
    {                                                                            \
        for (ptrdiff_t j = 0; j < H; ++j)                                        \
            m[j] = act[3 * H + j] * tanh_(c[j]);                                 \
    }                                                                            \
                                                                                 \
    CYLSTM_SIMD_CLONES                                                           \
    static void cylstm_cell_backward_##SUFFIX(                                   \
        ptrdiff_t H, real *restrict act, const real *restrict c,                 \
        const real *restrict c_prev, const real *restrict dh,                    \
        real *restrict dc)                                                       \
    {                                                                            \
        for (ptrdiff_t j = 0; j < H; ++j) {                                      \
            const real i = act[j], f = act[H + j];                               \
            const real g = act[2 * H + j], o = act[3 * H + j];                   \
            const real tanh_c = tanh_(c[j]);                                     \
            const real dc_j = dc[j] + dh[j] * o * (1 - tanh_c * tanh_c);         \
            act[j] = dc_j * g * i * (1 - i);                                     \
            act[H + j] = dc_j * c_prev[j] * f * (1 - f);                         \
            act[2 * H + j] = dc_j * i * (1 - g * g);                             \
            act[3 * H + j] = dh[j] * tanh_c * o * (1 - o);                       \
            dc[j] = dc_j * f;                                                    \
        }                                                                        \
    }

CYLSTM_DEFINE_CELLS(f32, float, cylstm_sigmoid_f, cylstm_tanh_f)
CYLSTM_DEFINE_CELLS(f64, double, cylstm_sigmoid_d, cylstm_tanh_d)

/* The instruction set the clones above run with on this CPU. */
static const char *cylstm_simd_path(void)
{
#if CYLSTM_DISPATCH == 1
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "avx512 (x86-64-v4)";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "avx2+fma (x86-64-v3)";
    return "sse2 (x86-64 baseline)";
#elif CYLSTM_DISPATCH == 2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return "avx512f (clang clone)";
    if (__builtin_cpu_supports("avx2"))
        return "avx2 (clang clone)";
    return "sse2 (x86-64 baseline)";
#else
    return "portable C (no run-time dispatch)";
#endif
}

#if defined(_MSC_VER) && !defined(__clang__)
#pragma pop_macro("restrict")
#endif

#endif /* CYLSTM_GATES_H */
