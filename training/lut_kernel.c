/* Native CPU kernels of training/lut.py's _Lookup: one call for the forward pass, one for the backward.
 *
 * They do, element by element and in the same order, the float operations of the pure-torch path
 * (which is the definition of lutnet.lut), so both paths give bit-identical results; build with
 * -ffp-contract=off so the compiler fuses no multiply and add on its own: the one fused multiply-add
 * is explicit, where torch.addcmul fuses (the caller says whether it does).
 *
 * Elements are laid out [batch, C, inner] (inner = H W for images, 1 for [B, C]); the table row of an
 * element is its channel, or row 0 for a shared table. Table coordinates: u = (x - lo) / step.
 * The forward pass writes y and what the backward pass needs: the flat index of the left knot
 * k + row (K+1), the nearest knot's flat index (nearest mode), the distance `along` the segment that
 * multiplies the rise, and the rise T[k+1] - T[k] (zeroed outside the range under clamp: the input
 * gradient's factor).
 */
#include <math.h>
#include <stdint.h>

/* Clip to [0, top] with NaN sent to 0, so an index is always inside its table row; on these
 * non-negative values the integer conversion is floor. */
#define SAFE_CLIP(v, top) ((v) >= 0 ? ((v) <= (top) ? (v) : (top)) : 0)
/* clamp(v, 0, top) as torch computes it: NaN stays NaN. */
#define CLAMP(v, top) ((v) < 0 ? 0 : ((v) > (top) ? (top) : (v)))

/* On x86-64 without -march, fmaf is a libm call per element, the larger part of the forward pass; a
 * clone built for FMA hardware, picked at load time, inlines it as one instruction. */
#if defined(__x86_64__) && defined(__GNUC__)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

/* value + distance rise, rounded once (fused) or twice, whichever torch.addcmul does on this machine. */
#define MULTIPLY_ADD(distance, rise, value, fma_fn) (fused ? fma_fn(distance, rise, value) : (value) + (distance) * (rise))

/* Visits element i = (b C + c) inner + j with its table row; loops instead of i / inner % C, since an
 * integer division per element would cost more than the lookup itself. */
#define FOR_EACH_ELEMENT(...)                                                                                  \
    for (int64_t b = 0, i = 0; b < batch; b++)                                                                 \
        for (int64_t c = 0; c < channels; c++) {                                                               \
            const int64_t row = rows == 1 ? 0 : c;                                                             \
            for (int64_t j = 0; j < inner; j++, i++) { __VA_ARGS__ }                                                \
        }

#define DEFINE_LOOKUP(real, suffix, fma_fn)                                                                    \
    FMA_CLONES void lut_forward_##suffix(const real *x, const real *table, const real *lo, const real *step,              \
                              int64_t batch, int64_t channels, int64_t inner, int64_t rows, int64_t bins,      \
                              int nearest, int clamp, int fused, real *y, int32_t *knot, int32_t *picked,      \
                              real *along, real *slope) {                                                      \
        const real last_left = (real)(bins - 1), top = (real)bins;                                             \
        FOR_EACH_ELEMENT(                                                                                      \
            const int32_t base = (int32_t)(row * (bins + 1));                                                  \
            const real u = (x[i] - lo[row]) / step[row];                                                       \
            const int32_t offset = (int32_t)SAFE_CLIP(u, last_left); /* floor: the value is >= 0 */            \
            const real left = (real)offset;                                                                    \
            const int32_t k = base + offset;                                                                   \
            real rise = table[k + 1] - table[k];                                                               \
            const real inside = clamp || nearest ? CLAMP(u, top) : u;                                          \
            real value = table[k], distance;                                                                   \
            if (nearest) {                                                                                     \
                const int32_t n = base + (int32_t)(SAFE_CLIP(inside, top) + (real)0.5);                        \
                picked[i] = n;                                                                                 \
                value = table[n];                                                                              \
                distance = clamp ? 0 : u - inside;                                                             \
                y[i] = clamp ? value : MULTIPLY_ADD(distance, rise, value, fma_fn);                            \
            } else {                                                                                           \
                distance = inside - left;                                                                      \
                y[i] = MULTIPLY_ADD(distance, rise, value, fma_fn);                                            \
            }                                                                                                  \
            if (clamp && u != inside) rise = rise * 0;                                                         \
            knot[i] = k;                                                                                       \
            along[i] = distance;                                                                               \
            slope[i] = rise;                                                                                   \
        )                                                                                                      \
    }                                                                                                          \
                                                                                                               \
    /* grad_x and grad_table may be NULL (not needed); grad_table must be zeroed. The table gradient is        \
     * accumulated in three passes, as the torch path's three scatter_add_ calls, so sums round alike. */      \
    void lut_backward_##suffix(const real *grad, const int32_t *knot, const int32_t *picked,                   \
                               const real *along, const real *slope, const real *step, int64_t batch,          \
                               int64_t channels, int64_t inner, int64_t rows, int nearest, int clamp,          \
                               real *grad_x, real *grad_table) {                                               \
        const int64_t count = batch * channels * inner;                                                        \
        if (grad_x) FOR_EACH_ELEMENT(grad_x[i] = grad[i] * slope[i] / step[row];)                              \
        if (!grad_table) return;                                                                               \
        const int moves = !(nearest && clamp);                                                                 \
        if (nearest) {                                                                                         \
            for (int64_t i = 0; i < count; i++) grad_table[picked[i]] += grad[i];                              \
            if (moves)                                                                                         \
                for (int64_t i = 0; i < count; i++) grad_table[knot[i]] += -(grad[i] * along[i]);              \
        } else {                                                                                               \
            for (int64_t i = 0; i < count; i++) grad_table[knot[i]] += grad[i] - grad[i] * along[i];           \
        }                                                                                                      \
        if (moves)                                                                                             \
            for (int64_t i = 0; i < count; i++) grad_table[knot[i] + 1] += grad[i] * along[i];                 \
    }

DEFINE_LOOKUP(float, float32, fmaf)
DEFINE_LOOKUP(double, float64, fma)
