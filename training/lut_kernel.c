/* Native CPU kernels of training/lut.py: the lookup's forward and backward passes, one call each, and
 * the table's smoothness (TV2) gradient.
 *
 * They do, element by element and in the same order, the float operations of the pure-torch path
 * (which computes lutnet.lut's function), so both paths give bit-identical results. Build with
 * -ffp-contract=off so the compiler fuses no multiply and add on its own: the one fused multiply-add
 * is explicit, where torch.addcmul fuses (the caller says whether it does).
 *
 * Elements are laid out [batch, C, inner] (inner = H W for images, 1 for [B, C]); the table row of an
 * element is its channel, or row 0 for a shared table. Table coordinates: u = (x - lo) / step.
 * The forward pass writes y and what the backward pass needs: the flat index of the left knot
 * k + row (K+1), the nearest knot's flat index (nearest mode), the distance `along` the segment that
 * multiplies the rise, and the rise T[k+1] - T[k] (zeroed outside the range under clamp: the input
 * gradient's factor).
 *
 * The kernels are written once for a type REAL: this file includes itself, once for float and once
 * for double (compile it by its absolute path).
 */
#ifndef REAL
#include <math.h>
#include <stdint.h>

/* Clip to [0, top] with NaN sent to 0, so an index is always inside its table row; on these
 * non-negative values the integer conversion is floor. */
#define SAFE_CLIP(v, top) ((v) >= 0 ? ((v) <= (top) ? (v) : (top)) : 0)
/* clamp(v, 0, top) as torch computes it: NaN stays NaN. */
#define CLAMP(v, top) ((v) < 0 ? 0 : ((v) > (top) ? (top) : (v)))
/* torch.sign: NaN and -0 give +0. */
#define SIGN(v) ((REAL)(((v) > 0) - ((v) < 0)))

/* On x86-64 without -march, fmaf is a libm call per element, the larger part of the forward pass; a
 * clone built for FMA hardware, picked at load time, inlines it as one instruction. */
#if defined(__x86_64__) && defined(__GNUC__)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

/* Visits element i = (b C + c) inner + j with its table row, by loops: an integer division per element
 * (i / inner % C) would cost more than the lookup itself. */
#define FOR_EACH_ELEMENT(...)                                                  \
    for (int64_t b = 0, i = 0; b < batch; b++)                                 \
        for (int64_t c = 0; c < channels; c++) {                               \
            const int64_t row = rows == 1 ? 0 : c;                             \
            for (int64_t j = 0; j < inner; j++, i++) { __VA_ARGS__ }           \
        }

/* The same visit, as loops the compiler vectorizes: runs of consecutive elements with consecutive or
 * equal rows. For arithmetic without table reads (the division is the costly part). */
#define FOR_EACH_ELEMENT_VECTORIZED(...)                                       \
    if (rows == 1) {                                                           \
        const int64_t row = 0;                                                 \
        for (int64_t i = 0; i < batch * channels * inner; i++) { __VA_ARGS__ } \
    } else if (inner == 1) {                                                   \
        for (int64_t b = 0; b < batch; b++) {                                  \
            const int64_t first = b * channels;                                \
            for (int64_t row = 0; row < channels; row++) {                     \
                const int64_t i = first + row;                                 \
                __VA_ARGS__                                                    \
            }                                                                  \
        }                                                                      \
    } else {                                                                   \
        FOR_EACH_ELEMENT(__VA_ARGS__)                                          \
    }

#define CONCAT_(a, b) a##b
#define CONCAT(a, b) CONCAT_(a, b)
#define NAME(base) CONCAT(base, SUFFIX)

#define REAL float
#define SUFFIX float32
#define FMA fmaf
#include __FILE__
#undef REAL
#undef SUFFIX
#undef FMA

#define REAL double
#define SUFFIX float64
#define FMA fma
#include __FILE__

#else /* the kernels for one type REAL */

FMA_CLONES void NAME(lut_forward_)(const REAL *x, const REAL *table, const REAL *lo, const REAL *step,
                                   int64_t batch, int64_t channels, int64_t inner, int64_t rows, int64_t bins,
                                   int nearest, int clamp, int fused, REAL *y, int32_t *knot, int32_t *picked,
                                   REAL *along, REAL *slope) {
    const REAL last_left = (REAL)(bins - 1), top = (REAL)bins;
    REAL *coordinate = along; /* u, overwritten by the distance once read */
    FOR_EACH_ELEMENT_VECTORIZED(coordinate[i] = (x[i] - lo[row]) / step[row];)
    FOR_EACH_ELEMENT(
        const int32_t base = (int32_t)(row * (bins + 1));
        const REAL u = coordinate[i];
        const int32_t offset = (int32_t)SAFE_CLIP(u, last_left); /* floor: the value is >= 0 */
        const REAL left = (REAL)offset;
        const int32_t k = base + offset;
        REAL rise = table[k + 1] - table[k];
        const REAL inside = clamp || nearest ? CLAMP(u, top) : u;
        REAL value = table[k], distance;
        if (nearest) {
            const int32_t n = base + (int32_t)(SAFE_CLIP(inside, top) + (REAL)0.5);
            picked[i] = n;
            value = table[n];
            distance = clamp ? 0 : u - inside;
        } else {
            distance = inside - left;
        }
        /* y = value + distance rise, rounded once (fused) or twice, whichever torch.addcmul does */
        y[i] = nearest && clamp ? value : fused ? FMA(distance, rise, value) : value + distance * rise;
        if (clamp && u != inside) rise = rise * 0;
        knot[i] = k;
        along[i] = distance;
        slope[i] = rise;
    )
}

/* grad_x and grad_table may be NULL (not needed); grad_table must be zeroed. The table gradient is
 * accumulated in three passes, as the torch path's three scatter_add_ calls, so sums round alike. */
void NAME(lut_backward_)(const REAL *grad, const int32_t *knot, const int32_t *picked, const REAL *along,
                         const REAL *slope, const REAL *step, int64_t batch, int64_t channels, int64_t inner,
                         int64_t rows, int nearest, int clamp, REAL *grad_x, REAL *grad_table) {
    const int64_t count = batch * channels * inner;
    if (grad_x) {
        FOR_EACH_ELEMENT_VECTORIZED(grad_x[i] = grad[i] * slope[i] / step[row];)
    }
    if (!grad_table) return;
    const int moves = !(nearest && clamp);
    if (nearest) {
        for (int64_t i = 0; i < count; i++) grad_table[picked[i]] += grad[i];
        if (moves)
            for (int64_t i = 0; i < count; i++) grad_table[knot[i]] += -(grad[i] * along[i]);
    } else {
        for (int64_t i = 0; i < count; i++) grad_table[knot[i]] += grad[i] - grad[i] * along[i];
    }
    if (moves)
        for (int64_t i = 0; i < count; i++) grad_table[knot[i] + 1] += grad[i] * along[i];
}

/* The (sub)gradient of the L1 norm of each row's second differences: the transposed second difference
 * of their signs, as torch.diff(F.pad(sign(torch.diff(table, n=2)), (2, 2)), n=2). */
void NAME(lut_smoothness_gradient_)(const REAL *table, int64_t rows, int64_t bins, REAL *gradient) {
    for (int64_t r = 0; r < rows; r++) {
        const REAL *knots = table + r * (bins + 1);
        REAL *out = gradient + r * (bins + 1);
        /* padded[m] = sign of the second difference at knot m - 2 (m = 2 .. K), zero around it */
        REAL before = 0, previous = 0; /* padded[m - 2], padded[m - 1] */
        for (int64_t m = 2; m <= bins + 2; m++) {
            REAL current = 0;
            if (m <= bins) {
                const int64_t j = m - 2;
                current = SIGN((knots[j + 2] - knots[j + 1]) - (knots[j + 1] - knots[j]));
            }
            out[m - 2] = (current - previous) - (previous - before);
            before = previous;
            previous = current;
        }
    }
}

#endif
