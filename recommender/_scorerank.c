/* Score and rank for the recommender's batch path: one pass per request instead of ~100 small
 * numpy calls per batch (recommender/scorerank.py wraps this module; recommender/batch.py uses it).
 *
 * The contract: for each request (a slice of the concatenated candidates), the same positions,
 * in the same order, as `rank` / `best_airings` (recommender/scorerank.py, engine.py): the best
 * airing of each content key, the first k keys along the order (group, -score, start_ms,
 * position), where group 0 is the known contents of a personal request (everything of a cold
 * one) and group 1 the rest. That order is total (positions are unique), so the k answers are
 * found by selecting the m best of a group (a quickselect on the full order key, then a sort of
 * those m only), taking first airings of new keys, and, while fewer than k keys are found,
 * selecting the next 2m, and so on; group 1 follows group 0 the same way. No threshold, no
 * ties to prove: the selected prefix *is* the prefix of the full order.
 *
 * Scores of group 0 of a personal request are computed here: the dot product of the content's
 * factors and the request's daypart profile (float32 inputs, accumulated in double, rounded to
 * float32 as numpy's float32 product is; equal to it to ~1e-7 relative), written into `score`.
 * Every other score (popularity) is computed by the caller and passed in `score`, and only
 * where it can matter: the call runs in two stages. Stage 1 ranks group 0 of every personal
 * request; where that finds k keys, group 1 (which sorts after all of group 0) cannot change
 * the answer, so its popularity is never computed. Stage 2 runs only for the requests stage 1
 * flagged (fewer than k keys; every cold request), after the caller wrote their popularity.
 * NaN scores sort after every number, as numpy's sorts put them.
 *
 * Safety: every index read from an input (candidate, content row, daypart, request bounds) is
 * checked against the buffer it indexes before use; a bad one raises ValueError. The compute
 * runs without the GIL (buffers stay exported for the call).
 */
#include "_native.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_AVX2 1 /* compiled for any x86 (target attribute), used where the CPU has it */
#include <immintrin.h>
#else
#define HAVE_AVX2 0
#endif

typedef struct {
    double neg;     /* -score */
    int64_t start;  /* start_ms */
    int64_t pos;    /* position in the request's slice */
    uint64_t key;   /* content_id, or programme_id when content_id == 0 */
} Elem;

/* The order of `best_airings` within a group: -score, then start_ms, then position; NaN last
 * (NaNs among themselves by start_ms and position, as numpy's lexsort puts them). */
static inline int before(const Elem *a, const Elem *b)
{
    if (a->neg != b->neg && !(isnan(a->neg) && isnan(b->neg))) {
        if (isnan(a->neg))
            return 0;
        if (isnan(b->neg))
            return 1;
        return a->neg < b->neg;
    }
    if (a->start != b->start)
        return a->start < b->start;
    return a->pos < b->pos;
}

static inline void swap(Elem *a, Elem *b)
{
    Elem t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(Elem *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        Elem x = v[i];
        Py_ssize_t j = i;
        while (j > 0 && before(&x, &v[j - 1])) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* Lomuto partition around the median of three; returns the pivot's final index. */
static Py_ssize_t partition(Elem *v, Py_ssize_t n)
{
    Py_ssize_t mid = n / 2, last = n - 1;
    if (before(&v[mid], &v[0]))
        swap(&v[mid], &v[0]);
    if (before(&v[last], &v[0]))
        swap(&v[last], &v[0]);
    if (before(&v[mid], &v[last]))
        swap(&v[mid], &v[last]); /* the median is now at `last` */
    Elem pivot = v[last];
    Py_ssize_t store = 0;
    for (Py_ssize_t i = 0; i < last; i++) {
        if (before(&v[i], &pivot)) {
            swap(&v[i], &v[store]);
            store++;
        }
    }
    swap(&v[store], &v[last]);
    return store;
}

static void sort(Elem *v, Py_ssize_t n)
{
    while (n > 16) {
        Py_ssize_t p = partition(v, n);
        if (p < n - 1 - p) { /* recurse into the smaller side: stack depth O(log n) */
            sort(v, p);
            v += p + 1;
            n -= p + 1;
        } else {
            sort(v + p + 1, n - p - 1);
            n = p;
        }
    }
    insertion_sort(v, n);
}

/* Reorder v so that its m first elements are the m first of the order (in any order). */
static void select_first(Elem *v, Py_ssize_t n, Py_ssize_t m)
{
    while (n > 16 && m > 0 && m < n) {
        Py_ssize_t p = partition(v, n);
        if (p == m || p + 1 == m)
            return;
        if (p > m) {
            n = p;
        } else {
            v += p + 1;
            n -= p + 1;
            m -= p + 1;
        }
    }
    if (m > 0 && m < n)
        insertion_sort(v, n);
}

/* ---- keys already answered: open addressing, entries stamped by request ------------------- */

typedef struct {
    uint64_t *keys;
    uint32_t *stamp;
    uint64_t mask;
    int shift;
    uint32_t now;
    double *vals; /* Top's scratch: one per candidate of the longest request */
} KeySet;

/* 1 if `key` was new (and is now in the set). */
static inline int add_key(KeySet *s, uint64_t key)
{
    uint64_t h = (key * UINT64_C(0x9E3779B97F4A7C15)) >> s->shift;
    for (;;) {
        if (s->stamp[h] != s->now) {
            s->stamp[h] = s->now;
            s->keys[h] = key;
            return 1;
        }
        if (s->keys[h] == key)
            return 0;
        h = (h + 1) & s->mask;
    }
}

/* The (k+1)-th smallest of x[0..n) (k < n), NaN-free; reorders x. Hoare partitions around the
 * median of three. */
static double kth_smallest(double *x, Py_ssize_t n, Py_ssize_t k)
{
    Py_ssize_t lo = 0, hi = n - 1;
    while (hi > lo) {
        double a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i <= j) {
                double t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return x[k];
    }
    return x[k];
}

/* Moves the elements with neg <= bound (never NaN) to the front; returns how many. With bound the
 * m-th smallest neg, they are a prefix of the order (every other one sorts after them), at least
 * m of them unless NaNs are among the m smallest. */
static Py_ssize_t front(Elem *v, Py_ssize_t n, double bound)
{
    Py_ssize_t c = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (v[i].neg <= bound) {
            if (i != c)
                swap(&v[i], &v[c]);
            c++;
        }
    }
    return c;
}

/* First airings of new keys along the order of v[0..n), until `k` keys in all; appends positions
 * to out. Returns the number of keys found (`found` on entry included). */
static Py_ssize_t take_keys(Elem *v, Py_ssize_t n, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out)
{
    Py_ssize_t lo = 0, m = 8 * (k - found);
    if (m < 16)
        m = 16;
    while (lo < n && found < k) {
        Py_ssize_t take = n - lo < m ? n - lo : m;
        select_first(v + lo, n - lo, take);
        sort(v + lo, take);
        for (Py_ssize_t i = lo; i < lo + take && found < k; i++) {
            if (add_key(set, v[i].key))
                out[found++] = v[i].pos;
        }
        lo += take;
        m *= 2;
    }
    return found;
}

/* The best of a group as it streams by: buf holds exactly the elements with neg <= bound (a
 * prefix of the order: every other one sorts after them). When it reaches `limit`, bound drops
 * to its m-th smallest neg and the rest leave, so most elements cost one comparison; at the end
 * buf holds at least the m first of the group (fewer only if the group is shorter, or NaNs,
 * never admitted, are among them). */
typedef struct {
    Elem *buf;
    double *vals;
    Py_ssize_t n, m, limit;
    double bound;
} Top;

/* Elements kept per answer still wanted: a few airings of one content among the best are
 * common, more are rare (then the next pass, with twice as many, follows). */
#define TOP_PER_K 3

static void top_init(Top *t, Elem *buf, double *vals, Py_ssize_t m)
{
    t->buf = buf;
    t->vals = vals;
    t->n = 0;
    t->m = m < 16 ? 16 : m;
    t->limit = 2 * t->m;
    t->bound = INFINITY;
}

static void top_compact(Top *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++)
        t->vals[i] = t->buf[i].neg;
    t->bound = kth_smallest(t->vals, t->n, t->m - 1);
    t->n = front(t->buf, t->n, t->bound);
    t->limit = t->n + t->m > 2 * t->m ? t->n + t->m : 2 * t->m; /* ties can keep more than m */
}

/* Sorts what Top kept and takes keys from it. */
static Py_ssize_t top_keys(Top *t, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out)
{
    sort(t->buf, t->n);
    for (Py_ssize_t i = 0; i < t->n && found < k; i++) {
        if (add_key(set, t->buf[i].key))
            out[found++] = t->buf[i].pos;
    }
    return found;
}

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

static float (*dot)(const float *, const float *, Py_ssize_t) = dot_portable; /* set at import */
static void (*dot2)(const float *, const float *, const float *, const float *, Py_ssize_t, double *,
                    double *) = dot2_portable;

/* ---- the call ------------------------------------------------------------------------------ */

enum { A_CAND, A_BOUNDS, A_DPS, A_AIRING_KNOWN, A_KNOWN, A_NEED, A_SCORE, A_PERSONAL, A_KS, A_ROWS, A_FACTORS,
       A_PROF, A_CONTENT, A_PROGRAMME, A_START, A_OUT, A_COUNTS, N_BUFFERS };

static const BufSpec spec[N_BUFFERS] = {
    {"cand", 8, 0},         {"bounds", 8, 0},       {"dps", 1, 0},          {"airing_known", 1, 0},
    {"known", 1, 1},        {"need", 1, 1},         {"score", 8, 1},        {"personal", 1, 0},
    {"ks", 8, 0},           {"airing_rows", 8, 0},  {"item_factors", 4, 0}, {"profiles", 4, 0},
    {"content_id", 8, 0},   {"programme_id", 8, 0}, {"start_ms", 8, 0},     {"out", 8, 1},
    {"counts", 8, 1},
};

typedef struct {
    const int64_t *cand, *bounds, *ks, *rows, *start;
    const int8_t *dps;
    const uint8_t *airing_known, *personal;
    const float *factors, *prof;
    const uint64_t *content, *programme;
    uint8_t *known, *need;
    double *score;
    int64_t *out, *counts;
    Py_ssize_t n, nreq, nsched, nrows, nprof, f, dayparts;
} Args;

/* Content rows are gathered from a matrix larger than the cache: ask for the one PREFETCH
 * candidates ahead while scoring this one (validated first: never an address out of bounds). */
#define PREFETCH 6

static inline void prefetch_row(const Args *a, Py_ssize_t j)
{
    int64_t c = a->cand[j];
    if (c < 0 || c >= a->nsched || !a->airing_known[c])
        return;
    int64_t row = a->rows[c];
    if (row < 0 || row >= a->nrows)
        return;
    const char *p = (const char *)(a->factors + (size_t)row * (size_t)a->f);
    for (size_t b = 0; b < (size_t)a->f * sizeof(float); b += 64)
        __builtin_prefetch(p + b);
}

/* 0 on success, else an error code; `where` the offending index. */
enum { OK, E_BOUNDS, E_K, E_CAND, E_ROW, E_DAYPART, E_COUNT, E_NOMEM };

static inline void put(const Args *a, Elem *e, Py_ssize_t j, Py_ssize_t lo, int64_t c)
{
    uint64_t content = a->content[c];
    e->neg = -a->score[j];
    e->start = a->start[c];
    e->pos = j - lo;
    e->key = content != 0 ? content : a->programme[c];
}

/* After the first pass (Top filled, `total` elements in the group: known == in_known), keys
 * from Top, then passes over what is left (all after what the previous passes kept) with twice
 * the m, until k keys or the group is used up; NaN scores last, ranked in rounds. */
static Py_ssize_t rank_group(const Args *a, Py_ssize_t lo, Py_ssize_t hi, int in_known, Top *top, Py_ssize_t total,
                             Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out)
{
    Py_ssize_t used = top->n;
    found = top_keys(top, k, found, set, out);
    while (found < k && used < total) {
        double prev = top->bound;
        top_init(top, top->buf, top->vals, 2 * top->m);
        for (Py_ssize_t j = lo; j < hi; j++) {
            double neg = -a->score[j];
            if ((a->known[j] != 0) == in_known && !(neg <= prev) && neg <= top->bound) {
                put(a, &top->buf[top->n++], j, lo, a->cand[j]);
                if (top->n >= top->limit)
                    top_compact(top);
            }
        }
        if (top->n == 0) { /* only NaN scores are left */
            Py_ssize_t n = 0;
            for (Py_ssize_t j = lo; j < hi; j++)
                if ((a->known[j] != 0) == in_known && isnan(a->score[j]))
                    put(a, &top->buf[n++], j, lo, a->cand[j]);
            return take_keys(top->buf, n, k, found, set, out);
        }
        used += top->n;
        found = top_keys(top, k, found, set, out);
    }
    return found;
}

/* Stage 1 of request r: the known contents of a personal request, scored and ranked (`known`
 * written for every candidate). Returns the keys found, or -1 with *err set. */
static Py_ssize_t known_first(const Args *a, Py_ssize_t r, int64_t *out, Elem *buf, KeySet *set, int *err,
                              Py_ssize_t *where)
{
    Py_ssize_t lo = (Py_ssize_t)a->bounds[r], hi = (Py_ssize_t)a->bounds[r + 1], total = 0;
    int personal = a->personal[r] != 0;
    const float *prof = a->prof + (size_t)r * (size_t)a->dayparts * (size_t)a->f;
    const float *pa = NULL, *pb = NULL; /* the pending product: scored with the next one */
    Py_ssize_t pending = -1;
    for (Py_ssize_t j = lo; j < hi; j++) {
        int64_t c = a->cand[j];
        if (c < 0 || c >= a->nsched) {
            *where = j;
            *err = E_CAND;
            return -1;
        }
        a->known[j] = personal && a->airing_known[c];
        if (!a->known[j])
            continue;
        if (j + PREFETCH < hi)
            prefetch_row(a, j + PREFETCH);
        int64_t row = a->rows[c], dp = a->dps[j];
        if (row < 0 || row >= a->nrows) {
            *where = j;
            *err = E_ROW;
            return -1;
        }
        if (dp < 0 || dp >= a->dayparts || (r + 1) * a->dayparts > a->nprof) {
            *where = j;
            *err = E_DAYPART;
            return -1;
        }
        const float *fa = a->factors + (size_t)row * (size_t)a->f, *fb = prof + (size_t)dp * (size_t)a->f;
        if (pending < 0) {
            pending = j, pa = fa, pb = fb;
        } else {
            dot2(pa, pb, fa, fb, a->f, &a->score[pending], &a->score[j]);
            pending = -1;
        }
    }
    if (pending >= 0)
        a->score[pending] = dot(pa, pb, a->f);
    Top top;
    top_init(&top, buf, set->vals, TOP_PER_K * a->ks[r]);
    for (Py_ssize_t j = lo; j < hi; j++) {
        if (!a->known[j])
            continue;
        total++;
        if (-a->score[j] <= top.bound) {
            put(a, &buf[top.n++], j, lo, a->cand[j]);
            if (top.n >= top.limit)
                top_compact(&top);
        }
    }
    return personal ? rank_group(a, lo, hi, 1, &top, total, a->ks[r], 0, set, out) : 0;
}

/* Stage 2 of request r: the keys of stage 1's answer again, then the rest (popularity scores
 * given by the caller) until k keys. Returns the keys found, or -1 with *err set. */
static Py_ssize_t the_rest(const Args *a, Py_ssize_t r, int64_t *out, Elem *buf, KeySet *set, int *err,
                           Py_ssize_t *where)
{
    Py_ssize_t lo = (Py_ssize_t)a->bounds[r], hi = (Py_ssize_t)a->bounds[r + 1], total = 0;
    int64_t found = a->counts[r];
    if (found < 0 || found > a->ks[r]) {
        *where = r;
        *err = E_COUNT;
        return -1;
    }
    for (int64_t i = 0; i < found; i++) {
        int64_t pos = out[i], c = pos >= 0 && pos < hi - lo ? a->cand[lo + pos] : -1;
        if (c < 0 || c >= a->nsched) {
            *where = r;
            *err = E_COUNT;
            return -1;
        }
        add_key(set, a->content[c] != 0 ? a->content[c] : a->programme[c]);
    }
    Top top;
    top_init(&top, buf, set->vals, TOP_PER_K * (a->ks[r] - found));
    for (Py_ssize_t j = lo; j < hi; j++) {
        if (a->known[j])
            continue;
        int64_t c = a->cand[j];
        if (c < 0 || c >= a->nsched) {
            *where = j;
            *err = E_CAND;
            return -1;
        }
        total++;
        if (-a->score[j] <= top.bound) {
            put(a, &buf[top.n++], j, lo, c);
            if (top.n >= top.limit)
                top_compact(&top);
        }
    }
    return rank_group(a, lo, hi, 0, &top, total, a->ks[r], (Py_ssize_t)found, set, out);
}

static int run(const Args *a, int stage, Py_ssize_t *where)
{
    Py_ssize_t longest = 0, kmax = 1;
    for (Py_ssize_t r = 0; r < a->nreq; r++) {
        int64_t lo = a->bounds[r], hi = a->bounds[r + 1];
        if (lo < 0 || hi < lo || hi > a->n || (r == 0 && lo != 0) || (r == a->nreq - 1 && hi != a->n)) {
            *where = r;
            return E_BOUNDS;
        }
        if (a->ks[r] < 0 || a->ks[r] > 1000000) {
            *where = r;
            return E_K;
        }
        if (hi - lo > longest)
            longest = (Py_ssize_t)(hi - lo);
        if (a->ks[r] > kmax)
            kmax = (Py_ssize_t)a->ks[r];
    }
    int shift = 64;
    uint64_t cap = 1;
    while (cap < 2 * (uint64_t)kmax + 2) {
        cap <<= 1;
        shift--;
    }
    Elem *buf = PyMem_RawMalloc(sizeof(Elem) * (size_t)(longest > 0 ? longest : 1));
    KeySet set = {PyMem_RawMalloc(sizeof(uint64_t) * cap), PyMem_RawCalloc(cap, sizeof(uint32_t)), cap - 1, shift, 0,
                  PyMem_RawMalloc(sizeof(double) * (size_t)(longest > 0 ? longest : 1))};
    int err = OK;
    if (buf == NULL || set.keys == NULL || set.stamp == NULL || set.vals == NULL) {
        err = E_NOMEM;
        goto done;
    }
    Py_ssize_t offset = 0;
    for (Py_ssize_t r = 0; r < a->nreq; offset += (Py_ssize_t)a->ks[r], r++) {
        if (stage == 2 && !a->need[r])
            continue;
        set.now++;
        Py_ssize_t found = stage == 1 ? known_first(a, r, a->out + offset, buf, &set, &err, where)
                                      : the_rest(a, r, a->out + offset, buf, &set, &err, where);
        if (found < 0)
            goto done;
        a->counts[r] = found;
        a->need[r] = found < a->ks[r];
    }
done:
    PyMem_RawFree(buf);
    PyMem_RawFree(set.keys);
    PyMem_RawFree(set.stamp);
    PyMem_RawFree(set.vals);
    return err;
}

PyDoc_STRVAR(score_rank_doc,
             "score_rank(cand, bounds, dps, airing_known, known, need, score, personal, ks, airing_rows,\n"
             "           item_factors, profiles, content_id, programme_id, start_ms, out, counts, factors,\n"
             "           dayparts, stage) -> None\n\n"
             "Buffers: cand int64 (n), bounds int64 (requests + 1), dps int8 (n), airing_known uint8 (the\n"
             "schedule's), known uint8 (n, written by stage 1), need uint8 (requests), score float64 (n), personal\n"
             "uint8 and ks int64 (requests), airing_rows int64, item_factors float32 (rows x factors), profiles\n"
             "float32 (requests * dayparts x factors), content_id/programme_id uint64, start_ms int64 (the\n"
             "schedule's), out int64 (sum of ks): request r's answer at sum(ks[:r]), counts[r] of them.\n"
             "Stage 1 scores and ranks the known contents of personal requests and sets need[r] where that\n"
             "gives fewer than k (cold requests: always); stage 2, for those only, ranks the rest by the\n"
             "popularity scores the caller wrote into `score` and appends it.");

static PyObject *sr_score_rank(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != N_BUFFERS + 3) {
        PyErr_Format(PyExc_TypeError, "score_rank() takes %d arguments", N_BUFFERS + 3);
        return NULL;
    }
    Py_ssize_t f = PyLong_AsSsize_t(args[N_BUFFERS]), dayparts = PyLong_AsSsize_t(args[N_BUFFERS + 1]);
    long stage = PyLong_AsLong(args[N_BUFFERS + 2]);
    if (PyErr_Occurred())
        return NULL;
    if (f < 1 || dayparts < 1 || dayparts > 127 || (stage != 1 && stage != 2)) {
        PyErr_SetString(PyExc_ValueError, "score_rank(): factors >= 1, dayparts in 1..127, stage 1 or 2");
        return NULL;
    }
    Py_buffer views[N_BUFFERS];
    Py_ssize_t len[N_BUFFERS];
    if (get_buffers("score_rank", args, spec, N_BUFFERS, views, len) < 0)
        return NULL;
    PyObject *result = NULL;
    Args a = {
        .cand = views[A_CAND].buf, .bounds = views[A_BOUNDS].buf, .ks = views[A_KS].buf,
        .rows = views[A_ROWS].buf, .start = views[A_START].buf, .dps = views[A_DPS].buf,
        .airing_known = views[A_AIRING_KNOWN].buf, .known = views[A_KNOWN].buf, .need = views[A_NEED].buf,
        .personal = views[A_PERSONAL].buf, .factors = views[A_FACTORS].buf, .prof = views[A_PROF].buf,
        .content = views[A_CONTENT].buf, .programme = views[A_PROGRAMME].buf, .score = views[A_SCORE].buf,
        .out = views[A_OUT].buf, .counts = views[A_COUNTS].buf, .n = len[A_CAND], .nreq = len[A_PERSONAL],
        .nsched = len[A_START], .nrows = len[A_FACTORS] / f, .nprof = len[A_PROF] / f, .f = f, .dayparts = dayparts,
    };
    Py_ssize_t need = 0;
    for (Py_ssize_t r = 0; r < a.nreq && r < len[A_KS]; r++)
        need += a.ks[r] > 0 ? (Py_ssize_t)a.ks[r] : 0;
    if (len[A_DPS] != a.n || len[A_KNOWN] != a.n || len[A_SCORE] != a.n || len[A_BOUNDS] != a.nreq + 1 ||
        len[A_KS] != a.nreq || len[A_NEED] != a.nreq || len[A_COUNTS] != a.nreq || len[A_ROWS] != a.nsched ||
        len[A_AIRING_KNOWN] != a.nsched || len[A_CONTENT] != a.nsched || len[A_PROGRAMME] != a.nsched ||
        len[A_OUT] < need || len[A_FACTORS] % f || len[A_PROF] % f) {
        PyErr_SetString(PyExc_ValueError, "score_rank(): buffer lengths do not agree");
        goto release;
    }
    if (a.nreq == 0 && a.n != 0) {
        PyErr_SetString(PyExc_ValueError, "score_rank(): candidates without requests");
        goto release;
    }
    Py_ssize_t where = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = run(&a, (int)stage, &where);
    Py_END_ALLOW_THREADS
    switch (err) {
    case OK:
        result = Py_NewRef(Py_None);
        break;
    case E_NOMEM:
        PyErr_NoMemory();
        break;
    default: {
        static const char *what[] = {"", "bounds of request", "k of request", "candidate at", "content row at",
                                     "daypart or profile at", "stage 1's answer of request"};
        PyErr_Format(PyExc_ValueError, "score_rank(): %s %zd out of range", what[err], where);
    }
    }
release:
    release_buffers(views, N_BUFFERS);
    return result;
}

static PyMethodDef methods[] = {
    {"score_rank", (PyCFunction)(void (*)(void))sr_score_rank, METH_FASTCALL, score_rank_doc},
    {"candidates", (PyCFunction)(void (*)(void))st_candidates, METH_FASTCALL, st_candidates_doc},
    {"profiles", (PyCFunction)(void (*)(void))st_profiles, METH_FASTCALL, st_profiles_doc},
    {"answers", (PyCFunction)(void (*)(void))st_answers, METH_FASTCALL, st_answers_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scorerank", "The recommender's batch path in C: candidates, profiles, score and rank, "
    "answers.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scorerank(void)
{
#if HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dot = dot_avx2;
        dot2 = dot2_avx2;
    }
#endif
    return PyModule_Create(&module);
}
