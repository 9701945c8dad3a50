/* Score and rank for the recommender's batch path: one pass per request instead of ~100 small
 * numpy calls per batch (recommender/scorerank.py wraps this module; recommender/batch.py uses it).
 *
 * The contract: for each request (a slice of the concatenated candidates), the same positions,
 * in the same order, as `rank` / `best_airings` (recommender/scorerank.py, engine.py): the best
 * airing of each content key, the first k keys along the order (group, -score, start_ms,
 * position), where group 0 is the known contents of a personal request (everything of a cold
 * one) and group 1 the rest. That order is total (positions are unique), so the k answers are
 * found by keeping the m = 3k best of a group as it streams by (every element with a score at
 * least the kept m-th: a prefix of the order, ties included), sorting those, taking first
 * airings of new keys, and, while fewer than k keys are found, doing the same with 2m over what
 * is left, and so on (_topk.c); group 1 follows group 0 the same way. No ties to prove: each
 * pass takes a prefix of the full order.
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
#include <string.h>

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
        if (!a->known[j]) {
            a->score[j] = NAN; /* popularity's, if stage 2 needs it */
            continue;
        }
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
            score_dot2(pa, pb, fa, fb, a->f, &a->score[pending], &a->score[j]);
            pending = -1;
        }
    }
    if (pending >= 0)
        a->score[pending] = score_dot(pa, pb, a->f);
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

static int run(const Args *a, int stage, Py_ssize_t *where, Py_ssize_t *needy)
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
        *needy += a->need[r];
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
             "           dayparts, stage) -> int\n\n"
             "Buffers: cand int64 (n), bounds int64 (requests + 1), dps int8 (n), airing_known uint8 (the\n"
             "schedule's), known uint8 (n, written by stage 1), need uint8 (requests), score float64 (n), personal\n"
             "uint8 and ks int64 (requests), airing_rows int64, item_factors float32 (rows x factors), profiles\n"
             "float32 (requests * dayparts x factors), content_id/programme_id uint64, start_ms int64 (the\n"
             "schedule's), out int64 (sum of ks): request r's answer at sum(ks[:r]), counts[r] of them.\n"
             "Stage 1 scores and ranks the known contents of personal requests and sets need[r] where that\n"
             "gives fewer than k (cold requests: always); stage 2, for those only, ranks the rest by the\n"
             "popularity scores the caller wrote into `score` and appends it. Returns how many requests\n"
             "need[] flags (stage 1 writes NaN scores where stage 2 may need popularity).");

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
    Py_ssize_t where = 0, needy = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = run(&a, (int)stage, &where, &needy);
    Py_END_ALLOW_THREADS
    switch (err) {
    case OK:
        result = PyLong_FromSsize_t(needy);
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
    score_dot_select();
    return PyModule_Create(&module);
}
