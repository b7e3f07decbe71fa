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

#endif
