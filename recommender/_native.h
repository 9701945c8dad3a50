/* Shared by the recommender's native batch stages, one extension module (one "is it built" flag):
 * _scorerank.c the module and score_rank, _topk.c the ranking's order and selection, _dot.c the
 * dot products, _candidates.c candidates, _stages.c profiles, answers and the buffer helpers. */
#ifndef RECOMMENDER_NATIVE_H
#define RECOMMENDER_NATIVE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A buffer argument: its name (in errors), item size in bytes (0: an index array of 4 or 8
 * bytes, either accepted) and whether the call writes it. */
typedef struct {
    const char *name;
    Py_ssize_t itemsize;
    int writable;
} BufSpec;

/* Gets the first n arguments as C-contiguous buffers of their spec's item size; len[i] is the
 * item count. 0 on success; -1 with an exception set (nothing held) otherwise. */
int get_buffers(const char *fn, PyObject *const *args, const BufSpec *spec, int n, Py_buffer *views,
                Py_ssize_t *len);
void release_buffers(Py_buffer *views, int n);

/* An index array of 4 or 8 bytes (int32 or int64), read as int64. */
static inline int64_t index_at(const Py_buffer *v, Py_ssize_t i)
{
    return v->itemsize == 4 ? (int64_t)((const int32_t *)v->buf)[i] : ((const int64_t *)v->buf)[i];
}

/* The first position in sorted a[0..n) whose value is not less than x (numpy's searchsorted). */
#define LOWER_BOUND(name, type)                                                                              \
    static inline Py_ssize_t name(const type *a, Py_ssize_t n, type x)                                      \
    {                                                                                                        \
        Py_ssize_t lo = 0;                                                                                   \
        while (n > 0) {                                                                                      \
            Py_ssize_t half = n / 2;                                                                         \
            if (a[lo + half] < x) {                                                                          \
                lo += half + 1;                                                                              \
                n -= half + 1;                                                                               \
            } else {                                                                                         \
                n = half;                                                                                    \
            }                                                                                                \
        }                                                                                                    \
        return lo;                                                                                           \
    }
LOWER_BOUND(lower_i64, int64_t)
LOWER_BOUND(lower_u64, uint64_t)
LOWER_BOUND(lower_u32, uint32_t)

/* ---- ranking (_topk.c) ---------------------------------------------------------------------- */

typedef struct {
    double neg;     /* -score */
    int64_t start;  /* start_ms */
    int64_t pos;    /* position in the request's slice */
    uint64_t key;   /* content_id, or programme_id when content_id == 0 */
} Elem;

/* Keys already answered: open addressing, entries stamped by request. */
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

/* First airings of new keys along the order of v[0..n), until `k` keys in all; appends positions
 * to out. Returns the number of keys found (`found` on entry included). */
Py_ssize_t take_keys(Elem *v, Py_ssize_t n, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out);
void top_init(Top *t, Elem *buf, double *vals, Py_ssize_t m);
void top_compact(Top *t);
/* Sorts what Top kept and takes keys from it. */
Py_ssize_t top_keys(Top *t, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out);

/* ---- dot products (_dot.c): float32 rows summed in double, rounded to float32 ---------------- */

extern float (*score_dot)(const float *a, const float *b, Py_ssize_t f);
/* Two at once, each exactly as score_dot computes it. */
extern void (*score_dot2)(const float *a1, const float *b1, const float *a2, const float *b2, Py_ssize_t f,
                          double *out1, double *out2);
void score_dot_select(void); /* at import: the AVX2 versions where the CPU has them */

/* ---- stages (_candidates.c, _stages.c) ------------------------------------------------------ */

PyObject *st_candidates(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *st_profiles(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *st_answers(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char st_candidates_doc[], st_profiles_doc[], st_answers_doc[];

#endif
