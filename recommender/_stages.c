/* The recommender's batch stages after candidates, in C (recommender/batchnative.py wraps them):
 *
 *   profiles    UserTable.profile per household: the overlay table first, then the model's;
 *   answers     the answered airings, their scores and reason codes (the watched-before lookup
 *               in the household's row of the history matrix), compact;
 *
 * and the buffer helpers of every function of the module. Each gives exactly what its numpy
 * counterpart in recommender/batch.py gives (profiles round as numpy's float32 operations do:
 * the extension is compiled with -ffp-contract=off). Every index read from an input is checked
 * against the buffer it indexes; a bad one raises ValueError. The work runs without the GIL.
 */
#include "_native.h"

#include <string.h>

int get_buffers(const char *fn, PyObject *const *args, const BufSpec *spec, int n, Py_buffer *views,
                Py_ssize_t *len)
{
    for (int i = 0; i < n; i++) {
        int flags = PyBUF_C_CONTIGUOUS | (spec[i].writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[i], &views[i], flags) < 0) {
            release_buffers(views, i);
            return -1;
        }
        Py_ssize_t size = views[i].itemsize;
        if (spec[i].itemsize ? size != spec[i].itemsize : size != 4 && size != 8) {
            PyErr_Format(PyExc_ValueError, "%s(): %s has items of %zd bytes", fn, spec[i].name, size);
            release_buffers(views, i + 1);
            return -1;
        }
        len[i] = views[i].len / size;
    }
    return 0;
}

void release_buffers(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* ---- profiles ------------------------------------------------------------------------------ */

enum { P_HOUSEHOLDS, P_O_IDS, P_O_FACTORS, P_O_KEYS, P_O_DP, P_U_IDS, P_U_FACTORS, P_U_KEYS, P_U_DP, P_OUT,
       P_PERSONAL, P_N };

static const BufSpec prof_spec[P_N] = {
    {"households", 8, 0},        {"overlay_ids", 8, 0}, {"overlay_factors", 4, 0}, {"overlay_dp_keys", 8, 0},
    {"overlay_dp_factors", 4, 0}, {"user_ids", 8, 0},   {"user_factors", 4, 0},    {"user_dp_keys", 8, 0},
    {"user_dp_factors", 4, 0},   {"out", 4, 1},         {"personal", 1, 1},
};

typedef struct {
    const uint64_t *ids;
    const float *factors, *dp;
    const int64_t *keys;
    Py_ssize_t n, rows, nkeys, dprows;
} Table;

typedef struct {
    Table t[2];
    const uint64_t *households;
    float *out;
    uint8_t *personal;
    Py_ssize_t nreq, f, d;
    float keep, blend; /* (1 - blend) and blend as numpy's float32 arithmetic takes them */
    int blended;
} ProfArgs;

/* 0, or 1 + the request whose row is out of range. */
static Py_ssize_t profile_all(const ProfArgs *a)
{
    size_t f = (size_t)a->f, d = (size_t)a->d;
    for (Py_ssize_t r = 0; r < a->nreq; r++) {
        float *out = a->out + (size_t)r * d * f;
        uint64_t hh = a->households[r];
        const Table *t = NULL;
        Py_ssize_t row = 0;
        for (int i = 0; i < 2 && t == NULL; i++) {
            row = lower_u64(a->t[i].ids, a->t[i].n, hh);
            if (row < a->t[i].n && a->t[i].ids[row] == hh)
                t = &a->t[i];
        }
        a->personal[r] = t != NULL;
        if (t == NULL) {
            memset(out, 0, sizeof(float) * d * f);
            continue;
        }
        if (row >= t->rows)
            return r + 1;
        const float *base = t->factors + (size_t)row * f;
        for (size_t p = 0; p < d; p++)
            memcpy(out + p * f, base, sizeof(float) * f);
        if (!a->blended || t->nkeys == 0)
            continue;
        /* the household's keys row * d + part: one search (2M keys: each costs cache misses), then
         * a scan; the first of equal keys, as numpy's searchsorted finds it */
        int64_t first = (int64_t)row * (int64_t)d;
        for (Py_ssize_t pos = lower_i64(t->keys, t->nkeys, first); pos < t->nkeys; pos++) {
            int64_t part = t->keys[pos] - first;
            if (part < 0 || part >= (int64_t)d) /* (negative only if the keys are not sorted) */
                break;
            if (pos > 0 && t->keys[pos - 1] == t->keys[pos])
                continue;
            if (pos >= t->dprows)
                return r + 1;
            const float *dp = t->dp + (size_t)pos * f;
            for (size_t i = 0; i < f; i++) {
                float x = a->keep * base[i], y = a->blend * dp[i];
                out[(size_t)part * f + i] = x + y;
            }
        }
    }
    return 0;
}

const char st_profiles_doc[] =
    "profiles(households, overlay_ids, overlay_factors, overlay_dp_keys, overlay_dp_factors, user_ids,\n"
    "         user_factors, user_dp_keys, user_dp_factors, out, personal, factors, dayparts, blend) -> None\n\n"
    "Writes out float32 (households * dayparts x factors): each household's scoring vector per daypart\n"
    "(UserTable.profile of the overlay when it holds the household, else of the model's table; zeros\n"
    "when neither does) and personal uint8: whether one does. Ids uint64 sorted, dp keys int64 sorted.";

PyObject *st_profiles(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != P_N + 3) {
        PyErr_Format(PyExc_TypeError, "profiles() takes %d arguments", P_N + 3);
        return NULL;
    }
    Py_ssize_t f = PyLong_AsSsize_t(args[P_N]), d = PyLong_AsSsize_t(args[P_N + 1]);
    double blend = PyFloat_AsDouble(args[P_N + 2]);
    if (PyErr_Occurred())
        return NULL;
    if (f < 1 || d < 1 || d > 127) {
        PyErr_SetString(PyExc_ValueError, "profiles(): factors >= 1 and dayparts in 1..127");
        return NULL;
    }
    Py_buffer v[P_N];
    Py_ssize_t len[P_N];
    if (get_buffers("profiles", args, prof_spec, P_N, v, len) < 0)
        return NULL;
    PyObject *result = NULL;
    ProfArgs a = {.households = v[P_HOUSEHOLDS].buf, .out = v[P_OUT].buf, .personal = v[P_PERSONAL].buf,
                  .nreq = len[P_HOUSEHOLDS], .f = f, .d = d, .keep = (float)(1.0 - blend), .blend = (float)blend,
                  .blended = blend > 0};
    for (int i = 0; i < 2; i++) {
        int b = i ? P_U_IDS : P_O_IDS;
        a.t[i] = (Table){v[b].buf, v[b + 1].buf, v[b + 3].buf, v[b + 2].buf, len[b], len[b + 1] / f, len[b + 2],
                         len[b + 3] / f};
        if (len[b + 1] % f || len[b + 3] % f) {
            PyErr_SetString(PyExc_ValueError, "profiles(): factor tables are not rows of `factors` floats");
            goto done;
        }
    }
    if (len[P_OUT] != a.nreq * d * f || len[P_PERSONAL] != a.nreq) {
        PyErr_SetString(PyExc_ValueError, "profiles(): buffer lengths do not agree");
        goto done;
    }
    Py_ssize_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = profile_all(&a);
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_Format(PyExc_ValueError, "profiles(): a factor row of request %zd out of range", bad - 1);
    else
        result = Py_NewRef(Py_None);
done:
    release_buffers(v, P_N);
    return result;
}

/* ---- answers ------------------------------------------------------------------------------- */

enum { A_OUT, A_COUNTS, A_KS, A_BOUNDS, A_CAND, A_KNOWN, A_SCORE, A_PERSONAL, A_HOUSEHOLDS, A_USER_IDS,
       A_INDPTR, A_INDICES, A_HIST, A_CONTENT, A_AIRINGS, A_SCORES, A_CODES, A_N };

static const BufSpec ans_spec[A_N] = {
    {"out", 8, 0},        {"counts", 8, 0},     {"ks", 8, 0},       {"bounds", 8, 0},     {"cand", 8, 0},
    {"known", 1, 0},      {"score", 8, 0},      {"personal", 1, 0}, {"households", 8, 0}, {"user_ids", 8, 0},
    {"seen_indptr", 0, 0}, {"seen_indices", 0, 0}, {"history_ids", 8, 0}, {"content_id", 8, 0},
    {"airings", 8, 1},    {"scores", 8, 1},     {"codes", 1, 1},
};

enum { R_PERSONAL, R_WATCHED, R_POPULAR, R_COLD };

typedef struct {
    const Py_buffer *indptr, *indices;
    const int64_t *out, *counts, *ks, *bounds, *cand;
    const uint8_t *known, *personal;
    const double *score;
    const uint64_t *households, *user_ids, *hist, *content;
    int64_t *airings;
    double *scores;
    uint8_t *codes;
    Py_ssize_t nreq, n, nslots, nitems, nusers, nhist, nsched, nindices, seen_rows;
} AnsArgs;

/* Whether column `col` is in row [lo, hi) of the history matrix (sorted rows searched). */
static int in_row(const AnsArgs *a, int64_t lo, int64_t hi, int sorted, int64_t col)
{
    if (!sorted) {
        for (int64_t i = lo; i < hi; i++)
            if (index_at(a->indices, i) == col)
                return 1;
        return 0;
    }
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, v = index_at(a->indices, mid);
        if (v == col)
            return 1;
        if (v < col)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* 0, or 1 + the request with an index out of range. */
static Py_ssize_t answer_all(const AnsArgs *a)
{
    Py_ssize_t item = 0;
    int64_t slot = 0; /* request r's answer starts at out[sum(ks[:r])] */
    for (Py_ssize_t r = 0; r < a->nreq; slot += a->ks[r], r++) {
        int64_t lo = a->bounds[r], hi = a->bounds[r + 1], count = a->counts[r];
        if (lo < 0 || hi < lo || hi > a->n || count < 0 || count > a->ks[r] || a->ks[r] > a->nslots - slot ||
            count > a->nitems - item)
            return r + 1;
        int64_t row_lo = 0, row_hi = 0, sorted = 1;
        if (a->personal[r] && a->nusers && a->nhist) {
            Py_ssize_t row = lower_u64(a->user_ids, a->nusers, a->households[r]);
            if (row < a->nusers && a->user_ids[row] == a->households[r] && row < a->seen_rows) {
                row_lo = index_at(a->indptr, row);
                row_hi = index_at(a->indptr, row + 1);
                if (row_lo < 0 || row_hi < row_lo || row_hi > a->nindices)
                    return r + 1;
                for (int64_t i = row_lo + 1; i < row_hi && sorted; i++)
                    sorted = index_at(a->indices, i - 1) <= index_at(a->indices, i);
            }
        }
        for (int64_t i = 0; i < count; i++, item++) {
            int64_t pos = a->out[slot + i];
            if (pos < 0 || pos >= hi - lo)
                return r + 1;
            int64_t j = lo + pos, c = a->cand[j];
            if (c < 0 || c >= a->nsched)
                return r + 1;
            a->airings[item] = c;
            a->scores[item] = a->score[j];
            uint8_t code = R_COLD;
            if (a->personal[r]) {
                code = a->known[j] ? R_PERSONAL : R_POPULAR;
                if (a->known[j] && row_hi > row_lo) {
                    uint64_t content = a->content[c];
                    Py_ssize_t col = lower_u64(a->hist, a->nhist, content);
                    if (col < a->nhist && a->hist[col] == content && in_row(a, row_lo, row_hi, sorted, col))
                        code = R_WATCHED;
                }
            }
            a->codes[item] = code;
        }
    }
    return item == a->nitems ? 0 : a->nreq + 1; /* counts do not fill `airings` */
}

const char st_answers_doc[] =
    "answers(out, counts, ks, bounds, cand, known, score, personal, households, user_ids, seen_indptr,\n"
    "        seen_indices, history_ids, content_id, airings, scores, codes, seen_rows) -> None\n\n"
    "From score_rank's out/counts (request r's answer at sum(ks[:r]), positions in its slice\n"
    "cand[bounds[r]:bounds[r + 1]]), writes the answered airings (int64), their scores (float64) and\n"
    "reason codes (uint8: 0 personal, 1 watched before, 2 popular, 3 cold start), compact in request\n"
    "order. Watched before: a known content in the household's row of the model's history matrix\n"
    "(CSR indptr/indices of 4 or 8 bytes, seen_rows rows; columns are history_ids, sorted).";

PyObject *st_answers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != A_N + 1) {
        PyErr_Format(PyExc_TypeError, "answers() takes %d arguments", A_N + 1);
        return NULL;
    }
    Py_ssize_t seen_rows = PyLong_AsSsize_t(args[A_N]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer v[A_N];
    Py_ssize_t len[A_N];
    if (get_buffers("answers", args, ans_spec, A_N, v, len) < 0)
        return NULL;
    PyObject *result = NULL;
    AnsArgs a = {
        .indptr = &v[A_INDPTR], .indices = &v[A_INDICES], .out = v[A_OUT].buf, .counts = v[A_COUNTS].buf,
        .ks = v[A_KS].buf, .bounds = v[A_BOUNDS].buf, .cand = v[A_CAND].buf, .known = v[A_KNOWN].buf,
        .personal = v[A_PERSONAL].buf, .score = v[A_SCORE].buf, .households = v[A_HOUSEHOLDS].buf,
        .user_ids = v[A_USER_IDS].buf, .hist = v[A_HIST].buf, .content = v[A_CONTENT].buf,
        .airings = v[A_AIRINGS].buf, .scores = v[A_SCORES].buf, .codes = v[A_CODES].buf, .nreq = len[A_COUNTS],
        .n = len[A_CAND], .nslots = len[A_OUT], .nitems = len[A_AIRINGS], .nusers = len[A_USER_IDS],
        .nhist = len[A_HIST], .nsched = len[A_CONTENT], .nindices = len[A_INDICES], .seen_rows = seen_rows,
    };
    if (len[A_KS] != a.nreq || len[A_BOUNDS] != a.nreq + 1 || len[A_PERSONAL] != a.nreq ||
        len[A_HOUSEHOLDS] != a.nreq || len[A_KNOWN] != a.n || len[A_SCORE] != a.n || len[A_SCORES] != a.nitems ||
        len[A_CODES] != a.nitems || seen_rows < 0 || len[A_INDPTR] < seen_rows + 1) {
        PyErr_SetString(PyExc_ValueError, "answers(): buffer lengths do not agree");
        goto done;
    }
    Py_ssize_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = answer_all(&a);
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_Format(PyExc_ValueError, "answers(): an index of request %zd out of range", bad - 1);
    else
        result = Py_NewRef(Py_None);
done:
    release_buffers(v, A_N);
    return result;
}
