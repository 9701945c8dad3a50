/* The scoring dot products of the recommender's kernel (_scorerank.c): a content's float32
 * factors against a household's daypart profile, summed in double (equal to numpy's float32
 * product to ~1e-7 relative; the same bits on every path below).
 */
#include "_native.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_AVX2 1 /* compiled for any x86 (target attribute), used where the CPU has it */
#include <immintrin.h>
#else
#define HAVE_AVX2 0
#endif

/* Dot products of float32 rows, summed in double: eight partial sums (lane l gets the products
 * l, l+8, l+16, ...; the tail goes to lane 0), reduced in one fixed order, then rounded to
 * float32. Each product of two floats is exact in double, so a fused multiply-add gives the
 * same bits as a multiply then an add: the AVX2 path, the SSE2 path and the portable one return
 * the same value for the same rows. */
static inline float reduce(double *s, const float *a, const float *b, Py_ssize_t i, Py_ssize_t f)
{
    for (; i < f; i++)
        s[0] += (double)a[i] * b[i];
    return (float)(((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])));
}

static float dot_portable(const float *a, const float *b, Py_ssize_t f)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    __m128d acc[4] = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
    for (; i + 8 <= f; i += 8) {
        for (int h = 0; h < 2; h++) {
            __m128 x = _mm_loadu_ps(a + i + 4 * h), y = _mm_loadu_ps(b + i + 4 * h);
            acc[2 * h] = _mm_add_pd(acc[2 * h], _mm_mul_pd(_mm_cvtps_pd(x), _mm_cvtps_pd(y)));
            acc[2 * h + 1] = _mm_add_pd(acc[2 * h + 1], _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(x, x)),
                                                                  _mm_cvtps_pd(_mm_movehl_ps(y, y))));
        }
    }
    for (int r = 0; r < 4; r++)
        _mm_storeu_pd(s + 2 * r, acc[r]);
#else
    for (; i + 8 <= f; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += (double)a[i + l] * b[i + l];
#endif
    return reduce(s, a, b, i, f);
}

#if HAVE_AVX2
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, Py_ssize_t f)
{
    double s[8];
    Py_ssize_t i = 0;
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (; i + 8 <= f; i += 8) {
        lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), lo);
        hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)), hi);
    }
    _mm256_storeu_pd(s, lo);
    _mm256_storeu_pd(s + 4, hi);
    return reduce(s, a, b, i, f);
}
#endif

/* Two dot products at once (each exactly as `dot` computes it): two independent chains of
 * additions hide each other's latency. */
static void dot2_portable(const float *a1, const float *b1, const float *a2, const float *b2, Py_ssize_t f,
                          double *out1, double *out2)
{
    *out1 = dot_portable(a1, b1, f);
    *out2 = dot_portable(a2, b2, f);
}

#if HAVE_AVX2
__attribute__((target("avx2,fma"))) static void dot2_avx2(const float *a1, const float *b1, const float *a2,
                                                          const float *b2, Py_ssize_t f, double *out1, double *out2)
{
    double s1[8], s2[8];
    Py_ssize_t i = 0;
    __m256d lo1 = _mm256_setzero_pd(), hi1 = _mm256_setzero_pd(), lo2 = _mm256_setzero_pd(),
            hi2 = _mm256_setzero_pd();
    for (; i + 8 <= f; i += 8) {
        lo1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a1 + i)), _mm256_cvtps_pd(_mm_loadu_ps(b1 + i)), lo1);
        lo2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a2 + i)), _mm256_cvtps_pd(_mm_loadu_ps(b2 + i)), lo2);
        hi1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a1 + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b1 + i + 4)),
                              hi1);
        hi2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a2 + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b2 + i + 4)),
                              hi2);
    }
    _mm256_storeu_pd(s1, lo1);
    _mm256_storeu_pd(s1 + 4, hi1);
    _mm256_storeu_pd(s2, lo2);
    _mm256_storeu_pd(s2 + 4, hi2);
    *out1 = reduce(s1, a1, b1, i, f);
    *out2 = reduce(s2, a2, b2, i, f);
}
#endif

float (*score_dot)(const float *, const float *, Py_ssize_t) = dot_portable;
void (*score_dot2)(const float *, const float *, const float *, const float *, Py_ssize_t, double *,
                   double *) = dot2_portable;

void score_dot_select(void)
{
#if HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        score_dot = dot_avx2;
        score_dot2 = dot2_avx2;
    }
#endif
}
