/* The int8 linear layer of pydeberta.quantization in AVX2, bit for bit.
 *
 * pydeberta.quantization.quantized_linear is the reference: each row of x is quantized to
 * int8 with its own scale, the integer products are summed exactly in int32, and the result is
 * scaled back in float32. This file does the same steps in the same order (so the same bits):
 *
 *   pyd_int8_quantize_rows   x [M, K] float32 -> q [M, ldq] int8 (columns K..ldq-1 zero), scale [M]
 *   pyd_int8_gemm_columns    y[r, o] = float32(acc[r, o]) * (x_scale[r] * w_scale[o]) + bias[o]
 *                            for the output columns o in [o0, o1), acc = sum_i q[r, i] * w[o, i]
 *
 * The product: AVX2's fastest integer multiply-add, vpmaddubsw, multiplies unsigned by signed
 * bytes and sums each pair of products into int16 with saturation. Here every operand is in
 * [-127, 127], and a . w = |a| . (sign(a) w) (vpabsb, vpsignb), so each pair sum is at most
 * 2 * 127 * 127 = 32258 < 32767: it never saturates, and the sums stay exact. vpmaddwd with ones
 * widens the pairs into int32 (8 lanes, 4 products each), vpaddd accumulates. The weights stay
 * int8 [N, K] as stored (a row per output channel, 32 bytes at a time); the activations are
 * quantized into int8 rows padded to a multiple of 32. A register tile of 3 rows x 3 output
 * columns holds 9 vector accumulators, reduced horizontally once at the end of the row. Vector
 * lanes sum in another order than the reference, which changes nothing in integers. (The
 * unsigned x signed form that skips the sign step, as ONNX Runtime's AVX2 kernel uses with
 * asymmetric uint8 activations, can saturate: its sums are not exact.)
 *
 * The functions carry target("avx2") and are only called when the CPU has AVX2
 * (pyd_int8_have_avx2); the rest of the extension is compiled for the baseline. No FMA target:
 * the float32 multiply and add of the scaling must stay two roundings, as in NumPy.
 */
#ifndef PYDEBERTA_INT8_GEMM_H
#define PYDEBERTA_INT8_GEMM_H

#include <stddef.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

#define PYD_INT8_QMAX 127
#define PYD_INT8_MR 3   /* rows of x per register tile */
#define PYD_INT8_NR 3   /* output columns per register tile: 9 accumulators + 3 weights + 4 temporaries */

static int pyd_int8_have_avx2(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define PYD_AVX2 __attribute__((target("avx2")))

/* One row: scale = max|x| / 127; q = clip(round_half_even(x / (scale or 1)), -127, 127); a row
 * with a NaN or an infinity gets scale NaN and q 0 (so its outputs are NaN), as the reference. */
PYD_AVX2 static void pyd_int8_quantize_row(const float *x, ptrdiff_t K, int8_t *q, ptrdiff_t ldq, float *scale)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), largest = _mm256_set1_ps(FLT_MAX);
    __m256 vmax = _mm256_setzero_ps(), nonfinite = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 8 <= K; i += 8) {
        __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        nonfinite = _mm256_or_ps(nonfinite, _mm256_cmp_ps(a, largest, _CMP_NLE_UQ));  /* NaN or inf */
        vmax = _mm256_max_ps(vmax, a);
    }
    float lanes[8], amax = 0.0f;
    int bad = _mm256_movemask_ps(nonfinite) != 0;
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++)
        amax = lanes[l] > amax ? lanes[l] : amax;
    for (; i < K; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        bad |= !(a <= FLT_MAX);
        amax = a > amax ? a : amax;
    }
    if (bad) {
        *scale = NAN;
        for (i = 0; i < ldq; i++)
            q[i] = 0;
        return;
    }
    float s = amax / (float)PYD_INT8_QMAX;
    *scale = s;
    float divisor = s > 0.0f ? s : 1.0f;
    const __m256 vdiv = _mm256_set1_ps(divisor);
    const __m256 hi = _mm256_set1_ps((float)PYD_INT8_QMAX), lo = _mm256_set1_ps(-(float)PYD_INT8_QMAX);
    for (i = 0; i + 8 <= K; i += 8) {
        __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), vdiv),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i n = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));  /* [8] int32 */
        __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));  /* [8] int16 */
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(words, words));  /* [8] int8 */
    }
    for (; i < K; i++) {
        __m128 v = _mm_round_ss(_mm_setzero_ps(), _mm_set_ss(x[i] / divisor), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        float r = _mm_cvtss_f32(v);
        r = r > PYD_INT8_QMAX ? PYD_INT8_QMAX : (r < -PYD_INT8_QMAX ? -PYD_INT8_QMAX : r);
        q[i] = (int8_t)r;
    }
    for (; i < ldq; i++)
        q[i] = 0;
}

PYD_AVX2 static void pyd_int8_quantize_rows(const float *x, ptrdiff_t M, ptrdiff_t K, ptrdiff_t ldx,
                                            int8_t *q, ptrdiff_t ldq, float *scale)
{
    for (ptrdiff_t r = 0; r < M; r++)
        pyd_int8_quantize_row(x + r * ldx, K, q + r * ldq, ldq, scale + r);
}

PYD_AVX2 static inline int32_t pyd_int8_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

#define PYD_INT8_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))  /* [32] int8 */
/* acc += the 32 products a[k] w[k], exactly: |a| . sign(a) w in int16 pairs, widened to int32 */
#define PYD_INT8_DOT(acc, abs_a, a, w) \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(w, a)), ones))

/* The full tile: acc[i][j] = sum_k a[i * lda + k] * w[j * ldw + k] for 3 rows and 3 columns, with
 * its nine accumulators as named variables (arrays of vectors made GCC keep some on the stack). */
PYD_AVX2 static void pyd_int8_tile3x3(const int8_t *a, ptrdiff_t lda, const int8_t *w, ptrdiff_t ldw, ptrdiff_t K,
                                     int32_t acc[PYD_INT8_MR][PYD_INT8_NR])
{
    const int8_t *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda;
    const int8_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00,
            c21 = c00, c22 = c00;
    ptrdiff_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m256i v0 = PYD_INT8_LOAD(w0 + k), v1 = PYD_INT8_LOAD(w1 + k), v2 = PYD_INT8_LOAD(w2 + k), u, au;
        u = PYD_INT8_LOAD(a0 + k); au = _mm256_abs_epi8(u);
        PYD_INT8_DOT(c00, au, u, v0); PYD_INT8_DOT(c01, au, u, v1); PYD_INT8_DOT(c02, au, u, v2);
        u = PYD_INT8_LOAD(a1 + k); au = _mm256_abs_epi8(u);
        PYD_INT8_DOT(c10, au, u, v0); PYD_INT8_DOT(c11, au, u, v1); PYD_INT8_DOT(c12, au, u, v2);
        u = PYD_INT8_LOAD(a2 + k); au = _mm256_abs_epi8(u);
        PYD_INT8_DOT(c20, au, u, v0); PYD_INT8_DOT(c21, au, u, v1); PYD_INT8_DOT(c22, au, u, v2);
    }
    __m256i c[3][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int32_t s = pyd_int8_hsum(c[i][j]);
            for (ptrdiff_t t = k; t < K; t++)
                s += (int32_t)a[i * lda + t] * (int32_t)w[j * ldw + t];
            acc[i][j] = s;
        }
}

/* An edge tile (fewer than 3 rows or columns): one accumulator at a time. */
PYD_AVX2 static void pyd_int8_tile_edge(const int8_t *a, ptrdiff_t lda, const int8_t *w, ptrdiff_t ldw, ptrdiff_t K,
                                       int mr, int nr, int32_t acc[PYD_INT8_MR][PYD_INT8_NR])
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const int8_t *ai = a + i * lda, *wj = w + j * ldw;
            __m256i c = _mm256_setzero_si256();
            ptrdiff_t k = 0;
            for (; k + 32 <= K; k += 32) {
                __m256i u = PYD_INT8_LOAD(ai + k);
                PYD_INT8_DOT(c, _mm256_abs_epi8(u), u, PYD_INT8_LOAD(wj + k));
            }
            int32_t s = pyd_int8_hsum(c);
            for (; k < K; k++)
                s += (int32_t)ai[k] * (int32_t)wj[k];
            acc[i][j] = s;
        }
}

/* Output columns [o0, o1) of y [M, N] (row stride ldy); see the file's comment. */
PYD_AVX2 static void pyd_int8_gemm_columns(const int8_t *a, ptrdiff_t M, ptrdiff_t K, ptrdiff_t lda,
                                           const float *x_scale, const int8_t *w, ptrdiff_t ldw,
                                           const float *w_scale, const float *bias, float *y, ptrdiff_t ldy,
                                           ptrdiff_t o0, ptrdiff_t o1)
{
    int32_t acc[PYD_INT8_MR][PYD_INT8_NR];
    for (ptrdiff_t o = o0; o < o1; o += PYD_INT8_NR) {
        int nr = o1 - o < PYD_INT8_NR ? (int)(o1 - o) : PYD_INT8_NR;
        const int8_t *wo = w + o * ldw;
        for (ptrdiff_t r = 0; r < M; r += PYD_INT8_MR) {
            int mr = M - r < PYD_INT8_MR ? (int)(M - r) : PYD_INT8_MR;
            const int8_t *ar = a + r * lda;
            if (mr == PYD_INT8_MR && nr == PYD_INT8_NR)
                pyd_int8_tile3x3(ar, lda, wo, ldw, K, acc);
            else
                pyd_int8_tile_edge(ar, lda, wo, ldw, K, mr, nr, acc);
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++) {
                    float scale = x_scale[r + i] * w_scale[o + j];
                    float v = (float)acc[i][j] * scale;
                    y[(r + i) * ldy + o + j] = bias ? v + bias[o + j] : v;
                }
        }
    }
}
#else  /* not x86 with GCC or Clang: never called (pyd_int8_have_avx2 is 0) */
static void pyd_int8_quantize_rows(const float *x, ptrdiff_t M, ptrdiff_t K, ptrdiff_t ldx,
                                   int8_t *q, ptrdiff_t ldq, float *scale) {}
static void pyd_int8_gemm_columns(const int8_t *a, ptrdiff_t M, ptrdiff_t K, ptrdiff_t lda,
                                  const float *x_scale, const int8_t *w, ptrdiff_t ldw,
                                  const float *w_scale, const float *bias, float *y, ptrdiff_t ldy,
                                  ptrdiff_t o0, ptrdiff_t o1) {}
#endif

#endif
