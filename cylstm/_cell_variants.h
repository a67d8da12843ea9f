/* The LSTM cell's variants, as the ONNX LSTM operator defines them (and Keras):
 *
 *     z_i = clip(gates_i + bias_i + p_i * c_prev)       i = F(z_i)
 *     z_f = clip(gates_f + bias_f + p_f * c_prev)       f = F(z_f), or 1 - i (input_forget)
 *     z_g = clip(gates_g + bias_g)                      g = G(z_g)
 *     c   = f * c_prev + i * g
 *     z_o = clip(gates_o + bias_o + p_o * c)            o = F(z_o)   (the NEW c)
 *     h   = o * H(c)
 *
 * with peepholes p (3H: i, f, o), clip(z) = min(max(z, -clip), clip) and
 * activations F, G, H of the ONNX operator's list, each with alpha and beta.
 * The plain cell (sigmoid, tanh, tanh, no peepholes, no clip) never comes here:
 * it runs _gates.h's fused cells unchanged.
 *
 * Two forward paths, each a few plain loops over a block of CYLSTM_BLOCK
 * elements that vectorise as _gates.h's do (same helpers, same
 * -fno-trapping-math selects): with sigmoid and tanh (peepholes, clip,
 * input_forget), two fused passes like the plain cell's; with other
 * activations, the pre-activations, then each activation over the whole block
 * with the switch on its code outside the element loop (cylstm_activate_*),
 * then c and h. Only softplus calls libm (a scalar log1p).
 *
 * What training keeps differs from the plain cell: the clipped pre-activations
 * z (not the activations), from which the backward pass recomputes each
 * activation and its derivative, and tells a clipped z (|z| = clip, gradient
 * zero) from one inside.
 */
#ifndef CYLSTM_CELL_VARIANTS_H
#define CYLSTM_CELL_VARIANTS_H

#include "_gates.h"

#if defined(_MSC_VER) && !defined(__clang__)
#pragma push_macro("restrict")
#undef restrict
#define restrict __restrict
#endif

/* Activation codes, in cylstm/_params.py ACTIVATIONS order. Each is written so
 * that NaN propagates (a select whose comparison fails on NaN picks z), as in
 * the plain cell and the NumPy reference. */
enum {
    CYLSTM_SIGMOID, CYLSTM_TANH, CYLSTM_RELU, CYLSTM_AFFINE, CYLSTM_LEAKY_RELU,
    CYLSTM_THRESHOLDED_RELU, CYLSTM_SCALED_TANH, CYLSTM_HARD_SIGMOID, CYLSTM_ELU,
    CYLSTM_SOFTSIGN, CYLSTM_SOFTPLUS
};

/* One direction's variant options. */
typedef struct {
    int code[3];            /* F (gates i, f, o), G (candidate g), H (of c) */
    double alpha[3], beta[3];
    double clip;            /* +inf: no clipping */
    int input_forget;       /* f = 1 - i */
    const void *peephole;   /* (3H,) p_i, p_f, p_o of the cell's dtype; zeros for none */
} cylstm_variant;

#define CYLSTM_CLIP(z, bound) ((z) > (bound) ? (bound) : ((z) < -(bound) ? -(bound) : (z)))

/* exp in float via the double routine: vectorises, exact to float rounding. */
CYLSTM_INLINE float cylstm_exp_f(float x) { return (float) cylstm_exp_d((double) x); }

/* y[k] = act(z[k]) for k < m; with dy, also dy[k] = act'(z[k]) (almost
 * everywhere for the piecewise-linear ones). One loop per case. Called once per
 * block, not inlined: inlined at each of the cells' call sites the switch made
 * the extension three times larger (2.3 MB against 0.74) for no measurable
 * speed. */
#define CYLSTM_DEFINE_ACTIVATIONS(SUFFIX, real, sigmoid, tanh_, exp_, abs_, log1p_, TARGET) \
    TARGET                                                                               \
    static void cylstm_activate_##SUFFIX(int code, real a, real b, ptrdiff_t m,         \
                                                const real *restrict z,                  \
                                                real *restrict y)                        \
    {                                                                                    \
        ptrdiff_t k;                                                                     \
        switch (code) {                                                                  \
        case CYLSTM_SIGMOID: for (k = 0; k < m; ++k) y[k] = sigmoid(z[k]); break;        \
        case CYLSTM_TANH: for (k = 0; k < m; ++k) y[k] = tanh_(z[k]); break;             \
        case CYLSTM_RELU: for (k = 0; k < m; ++k) y[k] = z[k] < 0 ? 0 : z[k]; break;     \
        case CYLSTM_AFFINE: for (k = 0; k < m; ++k) y[k] = a * z[k] + b; break;          \
        case CYLSTM_LEAKY_RELU:                                                          \
            for (k = 0; k < m; ++k) y[k] = z[k] >= 0 ? z[k] : a * z[k];                  \
            break;                                                                       \
        case CYLSTM_THRESHOLDED_RELU:                                                    \
            for (k = 0; k < m; ++k) y[k] = z[k] > a ? z[k] : 0;                          \
            break;                                                                       \
        case CYLSTM_SCALED_TANH: for (k = 0; k < m; ++k) y[k] = a * tanh_(b * z[k]); break; \
        case CYLSTM_HARD_SIGMOID:                                                        \
            for (k = 0; k < m; ++k) {                                                    \
                const real v = a * z[k] + b;                                             \
                y[k] = v < 0 ? 0 : (v > 1 ? 1 : v);                                      \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_ELU:                                                                 \
            for (k = 0; k < m; ++k)                                                      \
                y[k] = z[k] < 0 ? a * (exp_(z[k] < 0 ? z[k] : 0) - 1) : z[k];            \
            break;                                                                       \
        case CYLSTM_SOFTSIGN: for (k = 0; k < m; ++k) y[k] = z[k] / (1 + abs_(z[k])); break; \
        default: /* CYLSTM_SOFTPLUS: log(1 + e^z) without overflow */                    \
            for (k = 0; k < m; ++k)                                                      \
                y[k] = (z[k] > 0 ? z[k] : 0) + log1p_(exp_(-abs_(z[k])));                \
            break;                                                                       \
        }                                                                                \
    }                                                                                    \
                                                                                         \
    TARGET                                                                               \
    static void cylstm_activate_grad_##SUFFIX(int code, real a, real b,                  \
                                                     ptrdiff_t m, const real *restrict z, \
                                                     real *restrict y, real *restrict dy) \
    {                                                                                    \
        ptrdiff_t k;                                                                     \
        switch (code) {                                                                  \
        case CYLSTM_SIGMOID:                                                             \
            for (k = 0; k < m; ++k) {                                                    \
                const real s = sigmoid(z[k]);                                            \
                y[k] = s;                                                                \
                dy[k] = s * (1 - s);                                                     \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_TANH:                                                                \
            for (k = 0; k < m; ++k) {                                                    \
                const real t = tanh_(z[k]);                                              \
                y[k] = t;                                                                \
                dy[k] = 1 - t * t;                                                       \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_RELU:                                                                \
            for (k = 0; k < m; ++k) {                                                    \
                y[k] = z[k] < 0 ? 0 : z[k];                                              \
                dy[k] = z[k] > 0 ? 1 : 0;                                                \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_AFFINE:                                                              \
            for (k = 0; k < m; ++k) {                                                    \
                y[k] = a * z[k] + b;                                                     \
                dy[k] = a;                                                               \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_LEAKY_RELU:                                                          \
            for (k = 0; k < m; ++k) {                                                    \
                y[k] = z[k] >= 0 ? z[k] : a * z[k];                                      \
                dy[k] = z[k] >= 0 ? 1 : a;                                               \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_THRESHOLDED_RELU:                                                    \
            for (k = 0; k < m; ++k) {                                                    \
                y[k] = z[k] > a ? z[k] : 0;                                              \
                dy[k] = z[k] > a ? 1 : 0;                                                \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_SCALED_TANH:                                                         \
            for (k = 0; k < m; ++k) {                                                    \
                const real t = tanh_(b * z[k]);                                          \
                y[k] = a * t;                                                            \
                dy[k] = a * b * (1 - t * t);                                             \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_HARD_SIGMOID:                                                        \
            for (k = 0; k < m; ++k) {                                                    \
                const real v = a * z[k] + b;                                             \
                y[k] = v < 0 ? 0 : (v > 1 ? 1 : v);                                      \
                dy[k] = v > 0 && v < 1 ? a : 0;                                          \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_ELU:                                                                 \
            for (k = 0; k < m; ++k) {                                                    \
                const real e = exp_(z[k] < 0 ? z[k] : 0);                                \
                y[k] = z[k] < 0 ? a * (e - 1) : z[k];                                    \
                dy[k] = z[k] >= 0 ? 1 : a * e;                                           \
            }                                                                            \
            break;                                                                       \
        case CYLSTM_SOFTSIGN:                                                            \
            for (k = 0; k < m; ++k) {                                                    \
                const real d = 1 + abs_(z[k]);                                           \
                y[k] = z[k] / d;                                                         \
                dy[k] = 1 / (d * d);                                                     \
            }                                                                            \
            break;                                                                       \
        default: /* CYLSTM_SOFTPLUS: the derivative is sigmoid */                        \
            for (k = 0; k < m; ++k) {                                                    \
                y[k] = (z[k] > 0 ? z[k] : 0) + log1p_(exp_(-abs_(z[k])));                \
                dy[k] = sigmoid(z[k]);                                                   \
            }                                                                            \
            break;                                                                       \
        }                                                                                \
    }


/* The sigmoid/tanh cell with peepholes, clip and input_forget: two fused passes
 * per block, as the plain cell's, with its inlined helpers (no per-block call).
 * Same arguments as CYLSTM_VARIANT_PASSES below. */
#define CYLSTM_SIGMOID_TANH_PASSES(real, sigmoid, tanh_, m, b_i, b_f, b_g, b_o, p_i, p_f, p_o) \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                                \
        z_i[k] = CYLSTM_CLIP(gate_i[k] + (b_i) + (p_i) * c_k[k], bound);                 \
        z_f[k] = CYLSTM_CLIP(gate_f[k] + (b_f) + (p_f) * c_k[k], bound);                 \
        z_g[k] = CYLSTM_CLIP(gate_g[k] + (b_g), bound);                                  \
        y[0][k] = sigmoid(z_i[k]);                                                       \
        y[1][k] = coupled ? 1 - y[0][k] : sigmoid(z_f[k]);                               \
        y[2][k] = tanh_(z_g[k]);                                                         \
    }                                                                                    \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                                \
        const real c_new = CYLSTM_C_NEW(y[0][k], y[1][k], y[2][k], c_k[k]);              \
        c_k[k] = c_new;                                                                  \
        z_o[k] = CYLSTM_CLIP(gate_o[k] + (b_o) + (p_o) * c_new, bound);                  \
        h_k[k] = sigmoid(z_o[k]) * tanh_(c_new);                                         \
    }

/* The forward passes over m elements: gate_x, z_x, y_x, c_k, h_k point at the
 * block; bias and peephole terms are expressions in k (the row layout, where
 * k runs over units) or constants (the column layout, where k runs over rows). */
#define CYLSTM_VARIANT_PASSES(SUFFIX, real, m, b_i, b_f, b_g, b_o, p_i, p_f, p_o)          \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                                \
        z_i[k] = CYLSTM_CLIP(gate_i[k] + (b_i) + (p_i) * c_k[k], bound);                 \
        z_f[k] = CYLSTM_CLIP(gate_f[k] + (b_f) + (p_f) * c_k[k], bound);                 \
        z_g[k] = CYLSTM_CLIP(gate_g[k] + (b_g), bound);                                  \
    }                                                                                    \
    cylstm_activate_##SUFFIX(v->code[0], a_f, b_f_, (m), z_i, y[0]);                     \
    if (coupled)                                                                         \
        for (ptrdiff_t k = 0; k < (m); ++k) y[1][k] = 1 - y[0][k];                       \
    else                                                                                 \
        cylstm_activate_##SUFFIX(v->code[0], a_f, b_f_, (m), z_f, y[1]);                 \
    cylstm_activate_##SUFFIX(v->code[1], a_g, b_g_, (m), z_g, y[2]);                     \
    for (ptrdiff_t k = 0; k < (m); ++k) {                                                \
        const real c_new = CYLSTM_C_NEW(y[0][k], y[1][k], y[2][k], c_k[k]);              \
        c_k[k] = c_new;                                                                  \
        z_o[k] = CYLSTM_CLIP(gate_o[k] + (b_o) + (p_o) * c_new, bound);                  \
    }                                                                                    \
    cylstm_activate_##SUFFIX(v->code[0], a_f, b_f_, (m), z_o, y[3]);                     \
    cylstm_activate_##SUFFIX(v->code[2], a_h, b_h_, (m), c_k, y[1]);                     \
    for (ptrdiff_t k = 0; k < (m); ++k)                                                  \
        h_k[k] = y[3][k] * y[1][k];

/* The options as the cell's dtype, read once per call. */
#define CYLSTM_VARIANT_LOCALS(real)                                                      \
    const real *restrict peep = (const real *) v->peephole;                              \
    const real bound = (real) v->clip;                                                   \
    const real a_f = (real) v->alpha[0], b_f_ = (real) v->beta[0];                       \
    const real a_g = (real) v->alpha[1], b_g_ = (real) v->beta[1];                       \
    const real a_h = (real) v->alpha[2], b_h_ = (real) v->beta[2];                       \
    CYLSTM_ALIGN64 real local[4][CYLSTM_BLOCK];                                          \
    CYLSTM_ALIGN64 real y[4][CYLSTM_BLOCK];                                              \
    const int coupled = v->input_forget;                                                 \
    const int sigmoid_tanh = v->code[0] == CYLSTM_SIGMOID && v->code[1] == CYLSTM_TANH    \
                             && v->code[2] == CYLSTM_TANH;

/* variant_cell, variant_cell_columns: as _gates.h's cell and cell_columns (same
 *   arguments, plus the options v), except that `act`, if not NULL, receives
 *   the clipped pre-activations z_i, z_f, z_g, z_o.
 * variant_cell_output: m = o * H(c) from kept z and c (the unprojected h).
 * variant_cell_backward: as cell_backward, from kept z (overwritten with
 *   dL/dz, zero where z was clipped); grad_peephole (3H) is ADDED to. */
#define CYLSTM_DEFINE_VARIANT_CELLS(SUFFIX, real, abs_, sigmoid, tanh_, TARGET)         \
    TARGET                                                                               \
    static void cylstm_variant_cell_##SUFFIX(                                            \
        ptrdiff_t H, const cylstm_variant *v, const real *restrict gates,               \
        const real *restrict bias, real *restrict c, real *restrict h, real *restrict act) \
    {                                                                                    \
        CYLSTM_VARIANT_LOCALS(real)                                                      \
        for (ptrdiff_t j0 = 0; j0 < H; j0 += CYLSTM_BLOCK) {                             \
            const ptrdiff_t m = H - j0 < CYLSTM_BLOCK ? H - j0 : CYLSTM_BLOCK;           \
            const real *restrict gate_i = gates + j0, *restrict gate_f = gate_i + H;     \
            const real *restrict gate_g = gate_f + H, *restrict gate_o = gate_g + H;     \
            const real *restrict bias_j = bias + j0, *restrict peep_j = peep + j0;       \
            real *restrict z_i = act ? act + j0 : local[0];                              \
            real *restrict z_f = act ? z_i + H : local[1];                               \
            real *restrict z_g = act ? z_f + H : local[2];                               \
            real *restrict z_o = act ? z_g + H : local[3];                               \
            real *restrict c_k = c + j0, *restrict h_k = h + j0;                         \
            if (sigmoid_tanh) {                                                          \
                CYLSTM_SIGMOID_TANH_PASSES(real, sigmoid, tanh_, m, bias_j[k],           \
                                           bias_j[H + k], bias_j[2 * H + k],             \
                                           bias_j[3 * H + k], peep_j[k], peep_j[H + k],  \
                                           peep_j[2 * H + k])                            \
            } else {                                                                     \
                CYLSTM_VARIANT_PASSES(SUFFIX, real, m, bias_j[k], bias_j[H + k],         \
                                      bias_j[2 * H + k], bias_j[3 * H + k], peep_j[k],   \
                                      peep_j[H + k], peep_j[2 * H + k])                  \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
                                                                                         \
    TARGET                                                                               \
    static void cylstm_variant_cell_columns_##SUFFIX(                                    \
        ptrdiff_t H, ptrdiff_t n, const cylstm_variant *v, const real *restrict gates,  \
        ptrdiff_t ld_gates, const real *restrict bias, real *restrict c,                 \
        real *restrict h, real *restrict act, ptrdiff_t ld_state)                        \
    {                                                                                    \
        CYLSTM_VARIANT_LOCALS(real)                                                      \
        for (ptrdiff_t j = 0; j < H; ++j) {                                              \
            const real bias_i = bias[j], bias_f = bias[H + j];                           \
            const real bias_g = bias[2 * H + j], bias_o = bias[3 * H + j];               \
            const real peep_i = peep[j], peep_f = peep[H + j], peep_o = peep[2 * H + j]; \
            for (ptrdiff_t p0 = 0; p0 < n; p0 += CYLSTM_BLOCK) {                         \
                const ptrdiff_t m = n - p0 < CYLSTM_BLOCK ? n - p0 : CYLSTM_BLOCK;       \
                const real *restrict gate_i = gates + j * ld_gates + p0;                 \
                const real *restrict gate_f = gate_i + H * ld_gates;                     \
                const real *restrict gate_g = gate_f + H * ld_gates;                     \
                const real *restrict gate_o = gate_g + H * ld_gates;                     \
                real *restrict z_i = act ? act + j * ld_state + p0 : local[0];           \
                real *restrict z_f = act ? z_i + H * ld_state : local[1];                \
                real *restrict z_g = act ? z_f + H * ld_state : local[2];                \
                real *restrict z_o = act ? z_g + H * ld_state : local[3];                \
                real *restrict c_k = c + j * ld_state + p0;                              \
                real *restrict h_k = h + j * ld_state + p0;                              \
                if (sigmoid_tanh) {                                                      \
                    CYLSTM_SIGMOID_TANH_PASSES(real, sigmoid, tanh_, m, bias_i, bias_f,  \
                                               bias_g, bias_o, peep_i, peep_f, peep_o)   \
                } else {                                                                 \
                    CYLSTM_VARIANT_PASSES(SUFFIX, real, m, bias_i, bias_f, bias_g,       \
                                          bias_o, peep_i, peep_f, peep_o)                \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
                                                                                         \
    TARGET                                                                               \
    static void cylstm_variant_cell_output_##SUFFIX(                                     \
        ptrdiff_t H, const cylstm_variant *v, const real *restrict act,                  \
        const real *restrict c, real *restrict out)                                      \
    {                                                                                    \
        CYLSTM_ALIGN64 real o[CYLSTM_BLOCK];                                             \
        CYLSTM_ALIGN64 real hc[CYLSTM_BLOCK];                                            \
        for (ptrdiff_t j0 = 0; j0 < H; j0 += CYLSTM_BLOCK) {                             \
            const ptrdiff_t m = H - j0 < CYLSTM_BLOCK ? H - j0 : CYLSTM_BLOCK;           \
            cylstm_activate_##SUFFIX(v->code[0], (real) v->alpha[0], (real) v->beta[0],  \
                                     m, act + 3 * H + j0, o);                            \
            cylstm_activate_##SUFFIX(v->code[2], (real) v->alpha[2], (real) v->beta[2],  \
                                     m, c + j0, hc);                                     \
            for (ptrdiff_t k = 0; k < m; ++k)                                            \
                out[j0 + k] = o[k] * hc[k];                                              \
        }                                                                                \
    }                                                                                    \
                                                                                         \
    TARGET                                                                               \
    static void cylstm_variant_cell_backward_##SUFFIX(                                   \
        ptrdiff_t H, const cylstm_variant *v, real *restrict act, const real *restrict c, \
        const real *restrict c_prev, const real *restrict dh, real *restrict dc,         \
        real *restrict grad_peephole)                                                    \
    {                                                                                    \
        CYLSTM_VARIANT_LOCALS(real)                                                      \
        CYLSTM_ALIGN64 real dy[5][CYLSTM_BLOCK];                                         \
        real *restrict hc = local[0];                                                    \
        /* f = 1 - i: dL/di gains -dL/df, and z_f gets no gradient */                    \
        const real tied = coupled ? 1 : 0;                                               \
        (void) sigmoid_tanh; /* the backward pass runs one path */                       \
        for (ptrdiff_t j0 = 0; j0 < H; j0 += CYLSTM_BLOCK) {                             \
            const ptrdiff_t m = H - j0 < CYLSTM_BLOCK ? H - j0 : CYLSTM_BLOCK;           \
            real *restrict z_i = act + j0, *restrict z_f = z_i + H;                      \
            real *restrict z_g = z_f + H, *restrict z_o = z_g + H;                       \
            const real *restrict peep_j = peep + j0;                                     \
            real *restrict gp = grad_peephole + j0;                                      \
            cylstm_activate_grad_##SUFFIX(v->code[0], a_f, b_f_, m, z_i, y[0], dy[0]);   \
            if (coupled) {                                                               \
                for (ptrdiff_t k = 0; k < m; ++k) {                                      \
                    y[1][k] = 1 - y[0][k];                                               \
                    dy[1][k] = 0;                                                        \
                }                                                                        \
            } else {                                                                     \
                cylstm_activate_grad_##SUFFIX(v->code[0], a_f, b_f_, m, z_f, y[1], dy[1]); \
            }                                                                            \
            cylstm_activate_grad_##SUFFIX(v->code[1], a_g, b_g_, m, z_g, y[2], dy[2]);   \
            cylstm_activate_grad_##SUFFIX(v->code[0], a_f, b_f_, m, z_o, y[3], dy[3]);   \
            cylstm_activate_grad_##SUFFIX(v->code[2], a_h, b_h_, m, c + j0, hc, dy[4]);  \
            for (ptrdiff_t k = 0; k < m; ++k) {                                          \
                const real dh_k = dh[j0 + k], c_old = c_prev[j0 + k];                    \
                /* a clipped z is exactly +-bound: its gradient is zero */               \
                const real d_o = abs_(z_o[k]) < bound ? dh_k * hc[k] * dy[3][k] : 0;     \
                const real dc_k = dc[j0 + k] + dh_k * y[3][k] * dy[4][k]                 \
                                  + d_o * peep_j[2 * H + k];                             \
                const real d_if = dc_k * c_old; /* dL/df */                              \
                const real d_i = (dc_k * y[2][k] - tied * d_if) * dy[0][k];              \
                const real d_f = d_if * dy[1][k];                                        \
                const real d_g = dc_k * y[0][k] * dy[2][k];                              \
                const real dz_i = abs_(z_i[k]) < bound ? d_i : 0;                        \
                const real dz_f = abs_(z_f[k]) < bound ? d_f : 0;                        \
                const real dz_g = abs_(z_g[k]) < bound ? d_g : 0;                        \
                dc[j0 + k] = dc_k * y[1][k] + dz_i * peep_j[k] + dz_f * peep_j[H + k];   \
                gp[k] += dz_i * c_old;                                                   \
                gp[H + k] += dz_f * c_old;                                               \
                gp[2 * H + k] += d_o * c[j0 + k];                                        \
                z_i[k] = dz_i;                                                           \
                z_f[k] = dz_f;                                                           \
                z_g[k] = dz_g;                                                           \
                z_o[k] = d_o;                                                            \
            }                                                                            \
        }                                                                                \
    }

/* The variant cells of one dtype, as the kernel calls them. */
#define CYLSTM_DECLARE_VARIANT_MATH(SUFFIX, real)                                        \
    typedef struct {                                                                     \
        void (*cell)(ptrdiff_t, const cylstm_variant *, const real *, const real *,     \
                     real *, real *, real *);                                            \
        void (*cell_columns)(ptrdiff_t, ptrdiff_t, const cylstm_variant *, const real *, \
                             ptrdiff_t, const real *, real *, real *, real *, ptrdiff_t); \
        void (*cell_output)(ptrdiff_t, const cylstm_variant *, const real *, const real *, \
                            real *);                                                     \
        void (*cell_backward)(ptrdiff_t, const cylstm_variant *, real *, const real *,  \
                              const real *, const real *, real *, real *);               \
    } cylstm_variant_math_##SUFFIX;
CYLSTM_DECLARE_VARIANT_MATH(f32, float)
CYLSTM_DECLARE_VARIANT_MATH(f64, double)

/* One SIMD path of the variant cells: cylstm_variant_maths[k] is compiled for
 * the instruction set of _gates.h's cylstm_gate_maths[k], activations included. */
typedef struct {
    cylstm_variant_math_f32 f32;
    cylstm_variant_math_f64 f64;
} cylstm_variant_math;

#define CYLSTM_DEFINE_VARIANT_PATH(ISA, TARGET)                                          \
    CYLSTM_DEFINE_ACTIVATIONS(f32_##ISA, float, cylstm_sigmoid_f, cylstm_tanh_f,         \
                              cylstm_exp_f, fabsf, log1pf, TARGET)                       \
    CYLSTM_DEFINE_ACTIVATIONS(f64_##ISA, double, cylstm_sigmoid_d, cylstm_tanh_d,        \
                              cylstm_exp_d, fabs, log1p, TARGET)                         \
    CYLSTM_DEFINE_VARIANT_CELLS(f32_##ISA, float, fabsf, cylstm_sigmoid_f, cylstm_tanh_f, \
                                TARGET)                                                  \
    CYLSTM_DEFINE_VARIANT_CELLS(f64_##ISA, double, fabs, cylstm_sigmoid_d, cylstm_tanh_d, \
                                TARGET)
#define CYLSTM_VARIANT_ENTRY_OF(SUFFIX)                                                  \
    {cylstm_variant_cell_##SUFFIX, cylstm_variant_cell_columns_##SUFFIX,                 \
     cylstm_variant_cell_output_##SUFFIX, cylstm_variant_cell_backward_##SUFFIX}
#define CYLSTM_VARIANT_ENTRY(ISA)                                                        \
    {CYLSTM_VARIANT_ENTRY_OF(f32_##ISA), CYLSTM_VARIANT_ENTRY_OF(f64_##ISA)}

#if CYLSTM_X86_PATHS
CYLSTM_DEFINE_VARIANT_PATH(baseline, CYLSTM_TARGET_BASELINE)
CYLSTM_DEFINE_VARIANT_PATH(avx2, CYLSTM_TARGET_AVX2)
CYLSTM_DEFINE_VARIANT_PATH(avx512, CYLSTM_TARGET_AVX512)
static const cylstm_variant_math cylstm_variant_maths[] = {
    CYLSTM_VARIANT_ENTRY(baseline), CYLSTM_VARIANT_ENTRY(avx2), CYLSTM_VARIANT_ENTRY(avx512),
};
#else
CYLSTM_DEFINE_VARIANT_PATH(portable, CYLSTM_TARGET_PORTABLE)
static const cylstm_variant_math cylstm_variant_maths[] = {CYLSTM_VARIANT_ENTRY(portable)};
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#pragma pop_macro("restrict")
#endif

#endif /* CYLSTM_CELL_VARIANTS_H */
