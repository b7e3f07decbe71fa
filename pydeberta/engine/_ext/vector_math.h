/* The C library's erf and exp over arrays, vectorised by glibc's vector math library (libmvec).
 *
 * glibc's <math.h> declares SIMD variants of its functions only under -ffast-math, which this
 * project never uses (it breaks erf/GELU and NaN handling). Declaring erf and exp SIMD-enabled
 * here, without any fast-math flag, lets GCC's vectoriser call libmvec's variants of the same
 * functions (erf since glibc 2.35) inside the loops below, within libmvec's documented 4 ulp.
 * Each loop is compiled for SSE2, AVX2 and AVX-512 (target_clones), and the loader picks the
 * widest the processor has: 5x (SSE2) to 10x (AVX-512) faster than one scalar call per element.
 * Everywhere else (clang, another C library, older glibc) the same loops call the scalar
 * functions. The loops have no reductions, so vectorising them changes no rounding. */
#ifndef PYDEBERTA_VECTOR_MATH_H
#define PYDEBERTA_VECTOR_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define PYDEBERTA_LIBMVEC 1
#define PYDEBERTA_CLONES __attribute__((target_clones("default", "avx2", "avx512f"), unused))
double erf(double) __attribute__((__simd__("notinbranch")));
float expf(float) __attribute__((__simd__("notinbranch")));
double exp(double) __attribute__((__simd__("notinbranch")));
#else
#define PYDEBERTA_LIBMVEC 0
#if defined(__GNUC__)
#define PYDEBERTA_CLONES __attribute__((unused))
#else
#define PYDEBERTA_CLONES
#endif
#endif

/* y[k] = 0.5 x[k] (1 + erf(x[k] / sqrt(2))), evaluated in double and rounded once (GELU). */
static PYDEBERTA_CLONES void pydeberta_gelu_float(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++)
        y[k] = (float)(0.5 * (double)x[k] * (1.0 + erf((double)x[k] * 0.7071067811865476)));
}

static PYDEBERTA_CLONES void pydeberta_gelu_double(const double *x, double *y, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++)
        y[k] = 0.5 * x[k] * (1.0 + erf(x[k] * 0.7071067811865476));
}

/* y[k] = g[k] (Phi(x[k]) + x[k] phi(x[k])), the gradient g times GELU's derivative, with
 * Phi(x) = 0.5 (1 + erf(x / sqrt(2))) and phi(x) = exp(-x^2 / 2) / sqrt(2 pi): evaluated in double,
 * in the order of pydeberta.functional.gelu_backward, and rounded once. */
static PYDEBERTA_CLONES void pydeberta_gelu_backward_float(const float *g, const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double v = (double)x[k];
        double cdf = 0.5 * (1.0 + erf(v * 0.7071067811865476));
        double pdf = exp(-0.5 * v * v) * 0.3989422804014327;
        y[k] = (float)((double)g[k] * (cdf + v * pdf));
    }
}

static PYDEBERTA_CLONES void pydeberta_gelu_backward_double(const double *g, const double *x, double *y, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double cdf = 0.5 * (1.0 + erf(x[k] * 0.7071067811865476));
        double pdf = exp(-0.5 * x[k] * x[k]) * 0.3989422804014327;
        y[k] = g[k] * (cdf + x[k] * pdf);
    }
}

/* s[k] = exp(s[k] - top) in place (exp(-inf) = 0). */
static PYDEBERTA_CLONES void pydeberta_exp_shifted_float(float *s, ptrdiff_t n, float top) {
    for (ptrdiff_t k = 0; k < n; k++)
        s[k] = expf(s[k] - top);
}

static PYDEBERTA_CLONES void pydeberta_exp_shifted_double(double *s, ptrdiff_t n, double top) {
    for (ptrdiff_t k = 0; k < n; k++)
        s[k] = exp(s[k] - top);
}

/* Row reductions of the softmax and LayerNorm, kept as PYDEBERTA_LANES independent running results: lane k takes
 * elements k, k + LANES, ... and the lanes are combined in a fixed order at the end. Nothing is
 * reassociated, so GCC vectorises them without fast-math, and the result is the same on any
 * thread and any instruction set. The maximum is exact in any order; the sum is taken in double. */
#define PYDEBERTA_LANES 16

#define PYDEBERTA_ROW_REDUCTIONS(T, NAME)                                                          \
    /* max_j s[j] (-inf when n = 0; a NaN is never picked, as `s > top ? s : top`). */            \
    static PYDEBERTA_CLONES T pydeberta_max_##NAME(const T *s, ptrdiff_t n) {                      \
        T lane[PYDEBERTA_LANES], top = -INFINITY;                                                  \
        for (int k = 0; k < PYDEBERTA_LANES; k++) lane[k] = -INFINITY;                             \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++) lane[k] = s[j + k] > lane[k] ? s[j + k] : lane[k]; \
        for (; j < n; j++) top = s[j] > top ? s[j] : top;                                          \
        for (int k = 0; k < PYDEBERTA_LANES; k++) top = lane[k] > top ? lane[k] : top;             \
        return top;                                                                                \
    }                                                                                              \
    /* sum_j s[j], accumulated in double. */                                                       \
    static PYDEBERTA_CLONES double pydeberta_sum_##NAME(const T *s, ptrdiff_t n) {                 \
        double lane[PYDEBERTA_LANES] = {0.0}, total = 0.0;                                         \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++) lane[k] += (double)s[j + k];                 \
        for (int k = 0; k < PYDEBERTA_LANES; k++) total += lane[k];                                \
        for (; j < n; j++) total += (double)s[j];                                                  \
        return total;                                                                              \
    }                                                                                              \
    /* sum_j a[j] b[j], accumulated in double (the row sum of the softmax's backward). */          \
    static PYDEBERTA_CLONES double pydeberta_dot_##NAME(const T *a, const T *b, ptrdiff_t n) {     \
        double lane[PYDEBERTA_LANES] = {0.0}, total = 0.0;                                         \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++) lane[k] += (double)a[j + k] * (double)b[j + k]; \
        for (int k = 0; k < PYDEBERTA_LANES; k++) total += lane[k];                                \
        for (; j < n; j++) total += (double)a[j] * (double)b[j];                                   \
        return total;                                                                              \
    }                                                                                              \
    /* sum_j (s[j] - mean)^2, in double (the second pass of a LayerNorm's variance). */            \
    static PYDEBERTA_CLONES double pydeberta_sum_sq_dev_##NAME(const T *s, ptrdiff_t n, double mean) { \
        double lane[PYDEBERTA_LANES] = {0.0}, total = 0.0, d;                                      \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++) {                                            \
                d = (double)s[j + k] - mean;                                                       \
                lane[k] += d * d;                                                                  \
            }                                                                                      \
        for (int k = 0; k < PYDEBERTA_LANES; k++) total += lane[k];                                \
        for (; j < n; j++) {                                                                       \
            d = (double)s[j] - mean;                                                               \
            total += d * d;                                                                        \
        }                                                                                          \
        return total;                                                                              \
    }                                                                                              \
    /* y[j] = (s[j] - mean) * inv_std * w[j] + b[j], in double rounded once (y may be s). */       \
    static PYDEBERTA_CLONES void pydeberta_normalise_##NAME(const T *s, T *y, const T *w, const T *b, \
                                                            ptrdiff_t n, double mean, double inv_std) { \
        for (ptrdiff_t j = 0; j < n; j++)                                                          \
            y[j] = (T)(((double)s[j] - mean) * inv_std * (double)w[j] + (double)b[j]);             \
    }

PYDEBERTA_ROW_REDUCTIONS(float, float)
PYDEBERTA_ROW_REDUCTIONS(double, double)

/* LayerNorm's backward, row by row (pydeberta.functional.layer_norm_backward), all in double, with
 *     xhat[j] = (x[j] - mean) * inv_sigma,   g[j] = dy[j] w[j]     (w: the weight, in double)
 *   sum_g:     sum_j g[j]                                        16 lanes, as the sums above
 *   sum_gxhat: sum_j g[j] xhat[j]                                16 lanes
 *   dx:        dx[j] = (g[j] - mean_g - xhat[j] mean_gxhat) * inv_sigma, rounded once
 *   params:    dweight[j] += dy[j] xhat[j],  dbias[j] += dy[j]   (a block's partial sums, in double) */
#define PYDEBERTA_NORM_BACKWARD(T, NAME)                                                           \
    static PYDEBERTA_CLONES double pydeberta_norm_sum_g_##NAME(const T *dy, const double *w, ptrdiff_t n) { \
        double lane[PYDEBERTA_LANES] = {0.0}, total = 0.0;                                         \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++) lane[k] += (double)dy[j + k] * w[j + k];     \
        for (int k = 0; k < PYDEBERTA_LANES; k++) total += lane[k];                                \
        for (; j < n; j++) total += (double)dy[j] * w[j];                                          \
        return total;                                                                              \
    }                                                                                              \
    static PYDEBERTA_CLONES double pydeberta_norm_sum_gxhat_##NAME(const T *dy, const T *x, const double *w, \
                                                                   ptrdiff_t n, double mean, double inv_sigma) { \
        double lane[PYDEBERTA_LANES] = {0.0}, total = 0.0;                                         \
        ptrdiff_t j = 0;                                                                           \
        for (; j + PYDEBERTA_LANES <= n; j += PYDEBERTA_LANES)                                     \
            for (int k = 0; k < PYDEBERTA_LANES; k++)                                              \
                lane[k] += (double)dy[j + k] * w[j + k] * (((double)x[j + k] - mean) * inv_sigma); \
        for (int k = 0; k < PYDEBERTA_LANES; k++) total += lane[k];                                \
        for (; j < n; j++) total += (double)dy[j] * w[j] * (((double)x[j] - mean) * inv_sigma);    \
        return total;                                                                              \
    }                                                                                              \
    static PYDEBERTA_CLONES void pydeberta_norm_dx_##NAME(const T *dy, const T *x, const double *w, T *dx, \
                                                          ptrdiff_t n, double mean, double inv_sigma, \
                                                          double mean_g, double mean_gxhat) {      \
        for (ptrdiff_t j = 0; j < n; j++)                                                          \
            dx[j] = (T)(((double)dy[j] * w[j] - mean_g - ((double)x[j] - mean) * inv_sigma * mean_gxhat) \
                        * inv_sigma);                                                              \
    }                                                                                              \
    static PYDEBERTA_CLONES void pydeberta_norm_params_##NAME(const T *dy, const T *x, ptrdiff_t n, double mean, \
                                                              double inv_sigma, double *dweight, double *dbias) { \
        for (ptrdiff_t j = 0; j < n; j++) {                                                        \
            dweight[j] += (double)dy[j] * (((double)x[j] - mean) * inv_sigma);                     \
            dbias[j] += (double)dy[j];                                                             \
        }                                                                                          \
    }

PYDEBERTA_NORM_BACKWARD(float, float)
PYDEBERTA_NORM_BACKWARD(double, double)

/* Elementwise row steps of the softmax, here rather than in Cython so that they are compiled for
 * AVX2 and AVX-512 too (no reductions: vectorising them changes no rounding).
 *   scores:  out[j] = c2c[j] + rel[j] (rel may be NULL: c2c[j]) where visible[j], else -inf
 *   divide:  s[j] = s[j] / norm
 *   softmax_backward:  ds[j] = p[j] (dp[j] - dot) where visible[j], else 0 (dot = sum_k dp[k] p[k]),
 *            in double rounded once */
#define PYDEBERTA_ROW_STEPS(T, NAME)                                                                \
    static PYDEBERTA_CLONES void pydeberta_scores_##NAME(T *out, const T *c2c, const T *rel,          \
                                                         const unsigned char *visible, ptrdiff_t n) { \
        if (rel != NULL) {                                                                          \
            for (ptrdiff_t j = 0; j < n; j++) {                                                     \
                T s = c2c[j] + rel[j];                                                              \
                out[j] = visible[j] ? s : -INFINITY;                                                \
            }                                                                                       \
        } else {                                                                                    \
            for (ptrdiff_t j = 0; j < n; j++) {                                                     \
                T s = c2c[j];                                                                       \
                out[j] = visible[j] ? s : -INFINITY;                                                \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    static PYDEBERTA_CLONES void pydeberta_divide_##NAME(T *s, ptrdiff_t n, T norm) {               \
        for (ptrdiff_t j = 0; j < n; j++)                                                           \
            s[j] = s[j] / norm;                                                                     \
    }                                                                                               \
    static PYDEBERTA_CLONES void pydeberta_softmax_backward_##NAME(T *ds, const T *dp, const T *p,  \
                                                                   const unsigned char *visible,    \
                                                                   ptrdiff_t n, double dot) {       \
        for (ptrdiff_t j = 0; j < n; j++)                                                           \
            ds[j] = visible[j] ? (T)((double)p[j] * ((double)dp[j] - dot)) : (T)0;                  \
    }                                                                                               \
    /* dst[j] = src[index[j * step]] (a row of c2p through the relative index). */                  \
    static PYDEBERTA_CLONES void pydeberta_gather_##NAME(T *dst, const T *src, const int64_t *index,   \
                                                         ptrdiff_t step, ptrdiff_t n) {             \
        for (ptrdiff_t j = 0; j < n; j++)                                                           \
            dst[j] = src[index[j * step]];                                                          \
    }                                                                                               \
    /* dst[j] = src[-j] (a row of c2p inside the index's linear band, read backwards). */           \
    static PYDEBERTA_CLONES void pydeberta_reverse_##NAME(T *dst, const T *src, ptrdiff_t n) {        \
        for (ptrdiff_t j = 0; j < n; j++)                                                           \
            dst[j] = src[-j];                                                                       \
    }

PYDEBERTA_ROW_STEPS(float, float)
PYDEBERTA_ROW_STEPS(double, double)

/* The p2c term of a block of 8 query rows inside the index's linear band:
 *     rel[t * K + j] += p2c[j * stride + c0 - j + t]     for t in [0, 8), j in [ja, jb)
 * (c0 = band_c + i0). For one key the 8 rows read 8 neighbouring entries of its p2c row, so 8
 * keys are 8 vector loads and an 8 x 8 transpose in registers (AVX2 where the processor has it),
 * then one contiguous add per row. Each entry gets the same single addition as the scalar loop. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define PYDEBERTA_AVX2_BAND 1
__attribute__((target("avx2"))) static ptrdiff_t pydeberta_p2c_band8_avx2(float *rel, ptrdiff_t K, const float *p2c,
                                                                           ptrdiff_t stride, ptrdiff_t c0,
                                                                           ptrdiff_t ja, ptrdiff_t jb) {
    ptrdiff_t j = ja;
    for (; j + 8 <= jb; j += 8) {
        const float *src = p2c + j * stride + c0 - j;
        __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + (stride - 1)),
               r2 = _mm256_loadu_ps(src + 2 * (stride - 1)), r3 = _mm256_loadu_ps(src + 3 * (stride - 1)),
               r4 = _mm256_loadu_ps(src + 4 * (stride - 1)), r5 = _mm256_loadu_ps(src + 5 * (stride - 1)),
               r6 = _mm256_loadu_ps(src + 6 * (stride - 1)), r7 = _mm256_loadu_ps(src + 7 * (stride - 1));
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
        __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
        __m256 rows[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                          _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                          _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                          _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
        for (int t = 0; t < 8; t++) /* rows[t][m] = p2c entry of key j + m for row t */
            _mm256_storeu_ps(rel + t * K + j, _mm256_add_ps(_mm256_loadu_ps(rel + t * K + j), rows[t]));
    }
    return j;
}
#endif

static void pydeberta_p2c_band_float(float *rel, ptrdiff_t K, const float *p2c, ptrdiff_t stride, ptrdiff_t c0,
                                     ptrdiff_t ja, ptrdiff_t jb) {
    ptrdiff_t j = ja;
#ifdef PYDEBERTA_AVX2_BAND
    if (__builtin_cpu_supports("avx2"))
        j = pydeberta_p2c_band8_avx2(rel, K, p2c, stride, c0, ja, jb);
#endif
    for (; j < jb; j++) {
        const float *src = p2c + j * stride + c0 - j;
        for (int t = 0; t < 8; t++)
            rel[t * K + j] += src[t];
    }
}

#endif
