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
#include <string.h>

/* Clip to [0, top] with NaN sent to 0, so an index is always inside its table row; on these
 * non-negative values the integer conversion is floor. */
#define SAFE_CLIP(v, top) ((v) >= 0 ? ((v) <= (top) ? (v) : (top)) : 0)
/* clamp(v, 0, top) as torch computes it: NaN stays NaN. */
#define CLAMP(v, top) ((v) < 0 ? 0 : ((v) > (top) ? (top) : (v)))
/* torch.sign: NaN and -0 give +0. */
#define SIGN(v) ((REAL)(((v) > 0) - ((v) < 0)))

/* On x86-64 without -march, fmaf is a libm call per element, the larger part of the forward pass; a
 * clone built for FMA hardware, picked at load time, inlines it as one instruction. The TV2 gradient
 * gets an AVX2 clone: 8 knots per instruction instead of 4. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__) /* clones need ELF ifuncs */
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#define AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FMA_CLONES
#define AVX2_CLONES
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

/* The float32 forward run, 8 elements at a time with AVX2 gathers (the scalar loop is bound by its
 * instruction count); the same operations as forward_run_float32, lane by lane. Returns how many
 * leading elements it did; the scalar loop does the rest. Used where the CPU has AVX2 and FMA. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SIMD_AVAILABLE() (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))

__attribute__((target("avx2,fma"))) static inline __m256 clamp8(__m256 v, __m256 top) {
    const __m256 zero = _mm256_setzero_ps(); /* CLAMP: NaN stays NaN */
    const __m256 below_top = _mm256_blendv_ps(v, top, _mm256_cmp_ps(v, top, _CMP_GT_OQ));
    return _mm256_blendv_ps(below_top, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
}

__attribute__((target("avx2,fma"))) static inline __m256i safe_floor8(__m256 v, __m256 top) {
    /* SAFE_CLIP then floor: maxps returns its second operand (0) for NaN */
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), top));
}

__attribute__((target("avx2,fma"))) static int64_t forward_run_simd(
    const float *x, const float *table, const float *lo, const float *step, int64_t count, int64_t row0,
    int64_t row_stride, int64_t bins, int nearest, int clamp, int fused, float *y, int32_t *knot,
    int32_t *picked, float *along, float *slope) {
    const __m256 zero = _mm256_setzero_ps(), last_left = _mm256_set1_ps((float)(bins - 1));
    const __m256 top = _mm256_set1_ps((float)bins), half = _mm256_set1_ps(0.5f);
    const __m256i lane_base = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                 _mm256_set1_epi32((int32_t)(row_stride * (bins + 1))));
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const int64_t row = row0 + i * row_stride;
        const __m256 l = row_stride ? _mm256_loadu_ps(lo + row) : _mm256_set1_ps(lo[row]);
        const __m256 h = row_stride ? _mm256_loadu_ps(step + row) : _mm256_set1_ps(step[row]);
        const __m256i base = _mm256_add_epi32(_mm256_set1_epi32((int32_t)(row * (bins + 1))), lane_base);
        const __m256 u = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), l), h);
        const __m256i offset = safe_floor8(u, last_left);
        const __m256 left = _mm256_cvtepi32_ps(offset);
        const __m256i k = _mm256_add_epi32(base, offset);
        __m256 value = _mm256_i32gather_ps(table, k, 4);
        __m256 rise = _mm256_sub_ps(_mm256_i32gather_ps(table + 1, k, 4), value);
        const __m256 inside = clamp || nearest ? clamp8(u, top) : u;
        __m256 distance;
        if (nearest) {
            const __m256i n = _mm256_add_epi32(base, _mm256_cvttps_epi32(_mm256_add_ps(
                _mm256_min_ps(_mm256_max_ps(inside, zero), top), half)));
            _mm256_storeu_si256((__m256i *)(picked + i), n);
            value = _mm256_i32gather_ps(table, n, 4);
            distance = clamp ? zero : _mm256_sub_ps(u, inside);
        } else {
            distance = _mm256_sub_ps(inside, left);
        }
        _mm256_storeu_ps(y + i, nearest && clamp ? value
                                : fused      ? _mm256_fmadd_ps(distance, rise, value)
                                             : _mm256_add_ps(value, _mm256_mul_ps(distance, rise)));
        if (clamp)
            rise = _mm256_blendv_ps(rise, _mm256_mul_ps(rise, zero), _mm256_cmp_ps(u, inside, _CMP_NEQ_UQ));
        _mm256_storeu_si256((__m256i *)(knot + i), k);
        _mm256_storeu_ps(along + i, distance);
        _mm256_storeu_ps(slope + i, rise);
    }
    return i;
}
#endif

#define CONCAT_(a, b) a##b
#define CONCAT(a, b) CONCAT_(a, b)
#define NAME(base) CONCAT(base, SUFFIX)

#define REAL float
#define REAL_IS_FLOAT 1
#define SUFFIX float32
#define FMA fmaf
#include __FILE__
#undef REAL
#undef REAL_IS_FLOAT
#undef SUFFIX
#undef FMA

#define REAL double
#define REAL_IS_FLOAT 0
#define SUFFIX float64
#define FMA fma
#include __FILE__

#else /* the kernels for one type REAL */

/* The forward pass over a run of `count` consecutive elements whose rows are row0, row0 + row_stride,
 * ... (row_stride 1: channels of a [B, C] batch row; 0: one channel's pixels, or a shared table). */
static inline void NAME(forward_run_)(const REAL *x, const REAL *table, const REAL *lo, const REAL *step,
                                      int64_t count, int64_t row0, int64_t row_stride, int64_t bins,
                                      int nearest, int clamp, int fused, REAL *y, int32_t *knot,
                                      int32_t *picked, REAL *along, REAL *slope) {
    const REAL last_left = (REAL)(bins - 1), top = (REAL)bins;
    for (int64_t i = 0; i < count; i++) {
        const int64_t row = row0 + i * row_stride;
        const int32_t base = (int32_t)(row * (bins + 1));
        const REAL u = (x[i] - lo[row]) / step[row];
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
    }
}

FMA_CLONES void NAME(lut_forward_)(const REAL *x, const REAL *table, const REAL *lo, const REAL *step, int64_t batch,
                        int64_t channels, int64_t inner, int64_t rows, int64_t bins, int nearest, int clamp,
                        int fused, REAL *y, int32_t *knot, int32_t *picked, REAL *along, REAL *slope) {
    const int64_t run = rows == 1 ? batch * channels * inner : inner == 1 ? channels : inner;
    const int64_t runs = batch * channels * inner / (run ? run : 1);
    for (int64_t r = 0; r < runs; r++) {
        const int64_t first = r * run;
        const int64_t row0 = rows == 1 || inner == 1 ? 0 : r % channels, row_stride = rows > 1 && inner == 1;
        int64_t done = 0;
#if defined(SIMD_AVAILABLE) && REAL_IS_FLOAT
        if (SIMD_AVAILABLE())
            done = forward_run_simd(x + first, table, lo, step, run, row0, row_stride, bins, nearest, clamp, fused,
                                    y + first, knot + first, picked ? picked + first : picked, along + first,
                                    slope + first);
#endif
        const int64_t rest = first + done;
        NAME(forward_run_)(x + rest, table, lo, step, run - done, row0 + done * row_stride, row_stride, bins,
                           nearest, clamp, fused, y + rest, knot + rest, picked ? picked + rest : picked,
                           along + rest, slope + rest);
    }
}

/* grad_x and grad_table may be NULL (not needed); grad_table is overwritten. The table gradient is
 * accumulated in three passes, as the torch path's three scatter_add_ calls, so sums round alike. */
void NAME(lut_backward_)(const REAL *grad, const int32_t *knot, const int32_t *picked, const REAL *along,
                         const REAL *slope, const REAL *step, int64_t batch, int64_t channels, int64_t inner,
                         int64_t rows, int64_t bins, int nearest, int clamp, REAL *grad_x, REAL *grad_table) {
    const int64_t count = batch * channels * inner;
    if (grad_x) {
        FOR_EACH_ELEMENT_VECTORIZED(grad_x[i] = grad[i] * slope[i] / step[row];)
    }
    if (!grad_table) return;
    memset(grad_table, 0, sizeof(REAL) * (size_t)(rows * (bins + 1)));
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

/* The sign of row `knots`'s second difference at knot m (torch.diff(table, n=2)), 0 past its ends. */
static inline REAL NAME(curvature_sign_)(const REAL *knots, int64_t m, int64_t bins) {
    return m < 0 || m > bins - 2 ? 0 : SIGN((knots[m + 2] - knots[m + 1]) - (knots[m + 1] - knots[m]));
}

/* The gradient at knot j near the row's ends, where some of the three signs are the padding's zeros. */
static inline REAL NAME(edge_gradient_)(const REAL *knots, int64_t j, int64_t bins) {
    const REAL now = NAME(curvature_sign_)(knots, j, bins), before = NAME(curvature_sign_)(knots, j - 1, bins);
    return (now - before) - (before - NAME(curvature_sign_)(knots, j - 2, bins));
}

/* The (sub)gradient of the L1 norm of each row's second differences: the transposed second difference
 * of their signs, torch.diff(F.pad(sign(torch.diff(table, n=2)), (2, 2)), n=2); the signs are
 * recomputed per knot so that the inner loop vectorizes. */
AVX2_CLONES void NAME(lut_smoothness_gradient_)(const REAL *table, int64_t rows, int64_t bins, REAL *gradient) {
    for (int64_t r = 0; r < rows; r++) {
        const REAL *t = table + r * (bins + 1);
        REAL *out = gradient + r * (bins + 1);
        int64_t j = 0;
        for (; j < 2 && j <= bins; j++) out[j] = NAME(edge_gradient_)(t, j, bins);
        for (; j <= bins - 2; j++) { /* all three signs inside the row */
            const REAL now = SIGN((t[j + 2] - t[j + 1]) - (t[j + 1] - t[j]));
            const REAL before = SIGN((t[j + 1] - t[j]) - (t[j] - t[j - 1]));
            const REAL earlier = SIGN((t[j] - t[j - 1]) - (t[j - 1] - t[j - 2]));
            out[j] = (now - before) - (before - earlier);
        }
        for (; j <= bins; j++) out[j] = NAME(edge_gradient_)(t, j, bins);
    }
}

#endif
