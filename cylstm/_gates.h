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
 * scalar, 7x slower (no ymm instruction at all in the AVX2 clones).
 *
 * One binary runs on any x86-64 CPU: with GCC or Clang on x86-64 the cell
 * functions are compiled three times, for the baseline (SSE2), for AVX2+FMA
 * (x86-64-v3) and for AVX-512 (x86-64-v4), by target attributes, and gathered
 * in the table cylstm_gate_maths. The kernel picks an entry at import (the
 * best this CPU runs, or the one CYLSTM_SIMD names) and can be told another
 * per call, so tests run every path the CPU can run, not only the one the
 * dispatcher would choose. Everything else (Arm64, where the vectoriser emits
 * NEON; MSVC; strict ISO C) compiles the plain loops once, the only entry.
 * GNU attributes appear only under the GNU guard, so the header is ISO C99
 * with extensions off (ci/packaging.sh compiles it so).
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

/* Per-ISA copies need target attributes and __builtin_cpu_supports: GCC >= 11
 * (it knows AVX-512 well enough to vectorise for it) or Clang >= 14, on x86-64. */
#if CYLSTM_GNU && defined(__x86_64__) \
    && ((defined(__clang__) && __clang_major__ >= 14) \
        || (!defined(__clang__) && __GNUC__ >= 11))
#define CYLSTM_X86_PATHS 1
#define CYLSTM_FEATURES_V3 "avx,avx2,fma,bmi,bmi2,f16c,lzcnt,movbe"
#define CYLSTM_FEATURES_V4 CYLSTM_FEATURES_V3 ",avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
#define CYLSTM_TARGET_BASELINE
#define CYLSTM_TARGET_AVX2 __attribute__((target(CYLSTM_FEATURES_V3)))
#define CYLSTM_TARGET_AVX512 __attribute__((target(CYLSTM_FEATURES_V4)))
#else
#define CYLSTM_X86_PATHS 0
#define CYLSTM_TARGET_PORTABLE
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

/* The same rationals split in two steps, the clamp and the rational on an
 * input already clamped (the select of +-1 becomes a clamp of x, so the value
 * at |x| > 7.9 is tanh(7.9) to 4e-7, and NaN still propagates). For Clang's
 * fused cells only (see CYLSTM_CELL_PASSES). */
CYLSTM_INLINE float cylstm_tanh_clamp_f(float x)
{
    x = x > 7.9f ? 7.9f : x;
    return x < -7.9f ? -7.9f : x;
}

CYLSTM_INLINE float cylstm_sigmoid_clamp_f(float x)
{
    x = x > 15.8f ? 15.8f : x;
    return x < -15.8f ? -15.8f : x;
}

CYLSTM_INLINE float cylstm_tanh_clamped_f(float x)
{
    const float t = x * x;
    return x * CYLSTM_TANH_P(t, 1.0f, 1.0f) / CYLSTM_TANH_Q(t, 1.0f);
}

CYLSTM_INLINE float cylstm_sigmoid_clamped_f(float x)
{
    const float t = x * x;
    return x * CYLSTM_TANH_P(t, 0.25f, 0.25f) / CYLSTM_TANH_Q(t, 0.25f) + 0.5f;
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

/* The float64 functions take any input (cylstm_exp_d clamps): no clamp. */
CYLSTM_INLINE double cylstm_unclamped_d(double x) { return x; }

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
 * act_x[k]; then c[k] and h[k]. sigmoid and tanh_ take any input; clamps and
 * the *_clamped functions are the same two split (Clang's form, below). */
#if defined(__clang__)
/* Clang leaves the loops of select-after-rational scalar (0.75 us a cell at
 * H=64 on an AMD EPYC, AVX2 path). With the clamps in loops of their own (the
 * clamped inputs in act and h as scratch) it vectorises them: 0.24-0.29 us.
 * GCC vectorises both; the split form costs it 1.1x, so GCC keeps the two. */
#define CYLSTM_CELL_PASSES(real, sigmoid, tanh_, sig_clamp, sig_clamped,        \
                           tanh_clamp, tanh_clamped, m, bias_i, bias_f, bias_g,  \
                           bias_o)                                               \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                        \
        act_i[k] = sig_clamp(gate_i[k] + (bias_i));                              \
        act_f[k] = sig_clamp(gate_f[k] + (bias_f));                              \
        act_g[k] = tanh_clamp(gate_g[k] + (bias_g));                             \
        act_o[k] = sig_clamp(gate_o[k] + (bias_o));                              \
    }                                                                            \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                        \
        act_i[k] = sig_clamped(act_i[k]);                                        \
        act_f[k] = sig_clamped(act_f[k]);                                        \
        act_g[k] = tanh_clamped(act_g[k]);                                       \
        act_o[k] = sig_clamped(act_o[k]);                                        \
    }                                                                            \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                        \
        const real c_new = CYLSTM_C_NEW(act_i[k], act_f[k], act_g[k], c_k[k]);   \
        c_k[k] = c_new;                                                          \
        h_k[k] = tanh_clamp(c_new);                                              \
    }                                                                            \
    for (ptrdiff_t k = 0; k < (m); ++k)                                          \
        h_k[k] = act_o[k] * tanh_clamped(h_k[k]);
#else
#define CYLSTM_CELL_PASSES(real, sigmoid, tanh_, sig_clamp, sig_clamped,        \
                           tanh_clamp, tanh_clamped, m, bias_i, bias_f, bias_g,  \
                           bias_o)                                               \
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
#endif

#define CYLSTM_DEFINE_CELLS(SUFFIX, real, sigmoid, tanh_, clamps, TARGET)      \
    TARGET                                                                       \
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
            CYLSTM_CELL_PASSES(real, sigmoid, tanh_, clamps, m, bias_j[k],       \
                               bias_j[H + k], bias_j[2 * H + k], bias_j[3 * H + k]) \
        }                                                                        \
    }                                                                            \
                                                                                 \
    TARGET                                                                       \
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
                CYLSTM_CELL_PASSES(real, sigmoid, tanh_, clamps, m,              \
                                   bias_i, bias_f, bias_g, bias_o)               \
            }                                                                    \
        }                                                                        \
    }                                                                            \
                                                                                 \
    TARGET                                                                       \
    static void cylstm_cell_output_##SUFFIX(ptrdiff_t H, const real *restrict act, \
                                            const real *restrict c,              \
                                            real *restrict m)                    \
    {                                                                            \
        for (ptrdiff_t j = 0; j < H; ++j)                                        \
            m[j] = act[3 * H + j] * tanh_(c[j]);                                 \
    }                                                                            \
                                                                                 \
    TARGET                                                                       \
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

/* The four cell functions of one dtype, as the kernel calls them. */
#define CYLSTM_DECLARE_GATE_MATH(SUFFIX, real)                                   \
    typedef struct {                                                             \
        void (*cell)(ptrdiff_t, const real *, const real *, real *, real *, real *); \
        void (*cell_columns)(ptrdiff_t, ptrdiff_t, const real *, ptrdiff_t,     \
                             const real *, real *, real *, real *, ptrdiff_t);   \
        void (*cell_output)(ptrdiff_t, const real *, const real *, real *);      \
        void (*cell_backward)(ptrdiff_t, real *, const real *, const real *,     \
                              const real *, real *);                            \
    } cylstm_gate_math_##SUFFIX;
CYLSTM_DECLARE_GATE_MATH(f32, float)
CYLSTM_DECLARE_GATE_MATH(f64, double)

/* The clamp and clamped-input functions of each dtype, as one macro argument. */
#define CYLSTM_CLAMPS_F cylstm_sigmoid_clamp_f, cylstm_sigmoid_clamped_f,          \
                        cylstm_tanh_clamp_f, cylstm_tanh_clamped_f
#define CYLSTM_CLAMPS_D cylstm_unclamped_d, cylstm_sigmoid_d, cylstm_unclamped_d,  \
                        cylstm_tanh_d

/* One compiled path of the gate math: its name and its functions per dtype. */
typedef struct {
    const char *name;
    cylstm_gate_math_f32 f32;
    cylstm_gate_math_f64 f64;
} cylstm_gate_math;

#define CYLSTM_DEFINE_PATH(ISA, TARGET)                                          \
    CYLSTM_DEFINE_CELLS(f32_##ISA, float, cylstm_sigmoid_f, cylstm_tanh_f,       \
                        CYLSTM_CLAMPS_F, TARGET)                                 \
    CYLSTM_DEFINE_CELLS(f64_##ISA, double, cylstm_sigmoid_d, cylstm_tanh_d,      \
                        CYLSTM_CLAMPS_D, TARGET)
#define CYLSTM_PATH_ENTRY(ISA, NAME)                                             \
    {NAME,                                                                       \
     {cylstm_cell_f32_##ISA, cylstm_cell_columns_f32_##ISA, cylstm_cell_output_f32_##ISA, \
      cylstm_cell_backward_f32_##ISA},                                           \
     {cylstm_cell_f64_##ISA, cylstm_cell_columns_f64_##ISA, cylstm_cell_output_f64_##ISA, \
      cylstm_cell_backward_f64_##ISA}}

/* The paths this build has, from the most portable to the fastest. */
#if CYLSTM_X86_PATHS
CYLSTM_DEFINE_PATH(baseline, CYLSTM_TARGET_BASELINE)
CYLSTM_DEFINE_PATH(avx2, CYLSTM_TARGET_AVX2)
CYLSTM_DEFINE_PATH(avx512, CYLSTM_TARGET_AVX512)
static const cylstm_gate_math cylstm_gate_maths[] = {
    CYLSTM_PATH_ENTRY(baseline, "sse2 (x86-64 baseline)"),
    CYLSTM_PATH_ENTRY(avx2, "avx2+fma (x86-64-v3)"),
    CYLSTM_PATH_ENTRY(avx512, "avx512 (x86-64-v4)"),
};
#else
CYLSTM_DEFINE_PATH(portable, CYLSTM_TARGET_PORTABLE)
static const cylstm_gate_math cylstm_gate_maths[] = {
    CYLSTM_PATH_ENTRY(portable, "portable C (compiled once)"),
};
#endif
enum { CYLSTM_GATE_MATH_PATHS = sizeof cylstm_gate_maths / sizeof cylstm_gate_maths[0] };

/* Whether this CPU (and its OS, which must save the wide registers) runs
 * path k of cylstm_gate_maths. */
static int cylstm_gate_math_runs(int k)
{
    if (k < 0 || k >= CYLSTM_GATE_MATH_PATHS)
        return 0;
#if CYLSTM_X86_PATHS
    __builtin_cpu_init();
    const int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                   && __builtin_cpu_supports("bmi2");
    if (k == 1)
        return v3;
    if (k == 2)
        return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx512vl");
#endif
    return 1;
}

#if defined(_MSC_VER) && !defined(__clang__)
#pragma pop_macro("restrict")
#endif

#endif /* CYLSTM_GATES_H */
