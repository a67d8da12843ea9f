/* cylstm/_gates.h on its own, outside Cython: ci/compilers.sh compiles this with
 * GCC and Clang (-Werror) and in strict ISO C (GNU extensions off, the path MSVC
 * and other compilers take), then runs it. Each cell function of every SIMD
 * path this CPU runs is compared with the same step in double precision
 * through libm, so a path that compiles but computes wrong fails here too. */
#include "_gates.h"

#include <math.h>
#include <stdio.h>

enum { H = 70, N = 3 }; /* H spans two blocks of CYLSTM_BLOCK; N batch rows */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double worst = 0.0; /* largest error relative to the tolerance */

static void expect(double got, double want, double tolerance)
{
    const double ratio = fabs(got - want) / tolerance;
    if (!(ratio <= worst)) /* NaN counts as a failure */
        worst = ratio != ratio ? INFINITY : ratio;
}

/* Pre-activations that reach the saturated tails (|x| > 15.8) and zero. */
static double input(int k) { return 20.0 * sin(0.37 * k + 0.1) * (k % 5 == 0 ? 1.0 : 0.3); }

#define CHECK_DTYPE(math, real, tolerance)                                        \
    {                                                                             \
        real gates[4 * H * N], bias[4 * H], c[H * N], h[H * N], act[4 * H * N];   \
        real c0[H * N], m[H], dh[H], dc[H];                                       \
        for (int k = 0; k < 4 * H; ++k)                                           \
            bias[k] = (real)(0.1 * cos(k));                                       \
        for (int k = 0; k < 4 * H * N; ++k)                                       \
            gates[k] = (real)input(k);                                            \
        for (int k = 0; k < H * N; ++k)                                           \
            c[k] = c0[k] = (real)(0.5 * sin(1.3 * k));                            \
        /* Row layout, one row, with kept activations. */                         \
        (math).cell(H, gates, bias, c, h, act);                          \
        for (int j = 0; j < H; ++j) {                                             \
            const double i = sigmoid((double)gates[j] + bias[j]);                 \
            const double f = sigmoid((double)gates[H + j] + bias[H + j]);         \
            const double g = tanh((double)gates[2 * H + j] + bias[2 * H + j]);    \
            const double o = sigmoid((double)gates[3 * H + j] + bias[3 * H + j]); \
            const double c_new = f * c0[j] + i * g;                               \
            expect(c[j], c_new, tolerance);                                       \
            expect(h[j], o * tanh(c_new), tolerance);                             \
            expect(act[3 * H + j], o, tolerance);                                 \
        }                                                                         \
        (math).cell_output(H, act, c, m);                                \
        for (int j = 0; j < H; ++j)                                               \
            expect(m[j], h[j], tolerance);                                        \
        /* One step back: dL/dc_prev = (dc + dh o (1 - tanh(c)^2)) f. */          \
        for (int j = 0; j < H; ++j) {                                             \
            dh[j] = (real)(0.3 * cos(j));                                         \
            dc[j] = (real)(0.2 * sin(j));                                         \
        }                                                                         \
        {                                                                         \
            real f_kept[H], o_kept[H], dc_in[H];                                  \
            for (int j = 0; j < H; ++j) {                                         \
                f_kept[j] = act[H + j];                                           \
                o_kept[j] = act[3 * H + j];                                       \
                dc_in[j] = dc[j];                                                 \
            }                                                                     \
            (math).cell_backward(H, act, c, c0, dh, dc);                 \
            for (int j = 0; j < H; ++j) {                                         \
                const double t = tanh((double)c[j]);                              \
                const double d = dc_in[j] + dh[j] * o_kept[j] * (1 - t * t);      \
                expect(dc[j], d * f_kept[j], tolerance);                          \
                expect(act[3 * H + j], dh[j] * t * o_kept[j] * (1 - o_kept[j]),   \
                       tolerance);                                                \
            }                                                                     \
        }                                                                         \
        /* Column layout: N rows, the same numbers as the row layout per row. */  \
        for (int k = 0; k < H * N; ++k)                                           \
            c[k] = c0[k];                                                         \
        (math).cell_columns(H, N, gates, N, bias, c, h, NULL, N);        \
        for (int j = 0; j < H; ++j)                                               \
            for (int p = 0; p < N; ++p) {                                         \
                const double i = sigmoid((double)gates[j * N + p] + bias[j]);     \
                const double f =                                                  \
                    sigmoid((double)gates[(H + j) * N + p] + bias[H + j]);        \
                const double g =                                                  \
                    tanh((double)gates[(2 * H + j) * N + p] + bias[2 * H + j]);   \
                const double o =                                                  \
                    sigmoid((double)gates[(3 * H + j) * N + p] + bias[3 * H + j]); \
                const double c_new = f * c0[j * N + p] + i * g;                   \
                expect(c[j * N + p], c_new, tolerance);                           \
                expect(h[j * N + p], o * tanh(c_new), tolerance);                 \
            }                                                                     \
    }

/* NaN in a pre-activation or in c reaches h in its own unit only, as in the
 * float64 reference (the clamps and selects must let it through). */
#define CHECK_NAN(math, real)                                                     \
    {                                                                             \
        real gates[4 * H] = {0}, bias[4 * H] = {0}, c[H] = {0}, h[H];             \
        gates[3] = gates[H + 5] = gates[2 * H + 7] = gates[3 * H + 9] = (real)NAN; \
        c[11] = (real)NAN;                                                        \
        (math).cell(H, gates, bias, c, h, NULL);                                  \
        for (int j = 0; j < H; ++j) {                                             \
            const int nan_in = j == 3 || j == 5 || j == 7 || j == 9 || j == 11;   \
            if ((h[j] != h[j]) != nan_in)                                         \
                worst = INFINITY;                                                 \
        }                                                                         \
    }

int main(void)
{
    int failed = 0;
    for (int k = 0; k < CYLSTM_GATE_MATH_PATHS; ++k) {
        if (!cylstm_gate_math_runs(k)) {
            printf("gate math (%s): this CPU cannot run it\n", cylstm_gate_maths[k].name);
            continue;
        }
        worst = 0.0;
        CHECK_DTYPE(cylstm_gate_maths[k].f32, float, 1e-5)
        CHECK_DTYPE(cylstm_gate_maths[k].f64, double, 1e-12)
        CHECK_NAN(cylstm_gate_maths[k].f32, float)
        CHECK_NAN(cylstm_gate_maths[k].f64, double)
        printf("gate math (%s): largest error %.3g of the tolerance\n",
               cylstm_gate_maths[k].name, worst);
        failed |= !(worst <= 1.0);
    }
    return failed;
}
