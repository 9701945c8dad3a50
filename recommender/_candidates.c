/* The recommender's batch candidates in C (recommender/batchnative.py wraps it): per request,
 * Schedule.window (the searchsorted window, the min-remaining filter, the request's sorted
 * channel set), the exclude-watched filter (the household's row of Watched) and each
 * candidate's daypart (Dayparts.of_ms): exactly what `candidates` in recommender/batch.py and
 * `Dayparts.of_ms` give (the integer arithmetic wraps as numpy's int64 does). Every index read
 * from an input is checked against the buffer it indexes; a bad one raises ValueError. The
 * filter runs without the GIL.
 */
#include "_native.h"

#include <stdlib.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)
#define HOUR_MS INT64_C(3600000)

static inline int64_t wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static inline int64_t wrap_sub(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int is_sorted_u64(const uint64_t *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++)
        if (v[i] < v[i - 1])
            return 0;
    return 1;
}
/* ---- candidates ---------------------------------------------------------------------------- */

enum { C_T0, C_T1, C_CHAN_OFF, C_CHANS, C_EXCLUDE, C_HOUSEHOLDS, C_W_IDS, C_W_INDPTR, C_W_PROGRAMMES, C_START,
       C_STOP, C_CHANNEL, C_PROGRAMME, C_HOURS, C_BOUNDS, C_N };

static const BufSpec cand_spec[C_N] = {
    {"t0", 8, 0},          {"t1", 8, 0},         {"chan_off", 8, 0},     {"chans", 4, 0},      {"exclude", 1, 0},
    {"households", 8, 0},  {"watched_ids", 8, 0}, {"watched_indptr", 8, 0}, {"watched_programmes", 8, 0},
    {"start_ms", 8, 0},    {"stop_ms", 8, 0},    {"channel_id", 4, 0},   {"programme_id", 8, 0},
    {"hour_table", 1, 0},  {"bounds", 8, 1},
};

typedef struct {
    const int64_t *t0, *t1, *chan_off, *w_indptr, *start, *stop;
    const uint32_t *chans, *channel;
    const uint8_t *exclude;
    const uint64_t *households, *w_ids, *w_programmes, *programme;
    const int8_t *hours;
    int64_t *bounds, *lo, *hi, *cand;
    int8_t *dps;
    Py_ssize_t nreq, nsched, nchans, nw, nwp;
    int64_t max_length, min_remaining, offset;
} CandArgs;

enum { OK, E_CHANS, E_WATCHED, E_NOMEM };

/* The daypart of unix ms `ts`, remembering the local hour it fell in: candidates come by start
 * time, so most fall in the hour of the previous one (no divisions). */
typedef struct {
    int64_t lo, hi; /* local times [lo, hi): one hour, of daypart dp */
    int8_t dp;
} HourCache;

static inline int8_t daypart(const CandArgs *a, HourCache *h, int64_t ts)
{
    int64_t x = wrap_add(ts, a->offset); /* local time, wrapping as numpy's int64 does */
    if (x >= h->lo && x < h->hi)
        return h->dp;
    int64_t m = x % DAY_MS;
    if (m < 0)
        m += DAY_MS;
    h->dp = a->hours[m / HOUR_MS];
    if (x > INT64_MIN + HOUR_MS && x < INT64_MAX - 2 * HOUR_MS) { /* [lo, hi) without overflow */
        h->lo = x - m % HOUR_MS;
        h->hi = h->lo + HOUR_MS;
    }
    return h->dp;
}

/* A request's channel set as bits over [base, base + span) (span <= CHANNEL_BITS), else searched. */
#define CHANNEL_BITS 65536

typedef struct {
    uint64_t *bits;
    uint32_t base, span;
    const uint32_t *sorted;
    Py_ssize_t n;
} Channels;

static void channels_set(Channels *s, const uint32_t *chans, Py_ssize_t n)
{
    s->sorted = chans;
    s->n = n;
    s->span = 0;
    if (n == 0 || s->bits == NULL)
        return;
    uint32_t lo = chans[0], hi = chans[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        lo = chans[i] < lo ? chans[i] : lo;
        hi = chans[i] > hi ? chans[i] : hi;
    }
    if ((uint64_t)hi - lo >= CHANNEL_BITS)
        return;
    s->base = lo;
    s->span = hi - lo + 1;
    memset(s->bits, 0, sizeof(uint64_t) * ((s->span + 63) / 64));
    for (Py_ssize_t i = 0; i < n; i++)
        s->bits[(chans[i] - lo) >> 6] |= UINT64_C(1) << ((chans[i] - lo) & 63);
}

static inline int channels_have(const Channels *s, uint32_t ch)
{
    if (s->span) {
        uint32_t d = ch - s->base;
        return d < s->span && (s->bits[d >> 6] >> (d & 63) & 1);
    }
    Py_ssize_t p = lower_u32(s->sorted, s->n, ch);
    return p < s->n && s->sorted[p] == ch;
}

/* The household's watched programmes, sorted (a copy in *scratch if the row is not). */
static int watched_row(const CandArgs *a, uint64_t household, const uint64_t **row, Py_ssize_t *n,
                       uint64_t **scratch)
{
    *n = 0;
    Py_ssize_t i = lower_u64(a->w_ids, a->nw, household);
    if (i >= a->nw || a->w_ids[i] != household)
        return OK;
    int64_t lo = a->w_indptr[i], hi = a->w_indptr[i + 1];
    if (lo < 0 || hi < lo || hi > a->nwp)
        return E_WATCHED;
    *row = a->w_programmes + lo;
    *n = (Py_ssize_t)(hi - lo);
    if (!is_sorted_u64(*row, *n)) {
        PyMem_RawFree(*scratch);
        *scratch = PyMem_RawMalloc(sizeof(uint64_t) * (size_t)*n);
        if (*scratch == NULL)
            return E_NOMEM;
        memcpy(*scratch, *row, sizeof(uint64_t) * (size_t)*n);
        qsort(*scratch, (size_t)*n, sizeof(uint64_t), cmp_u64);
        *row = *scratch;
    }
    return OK;
}

static int filter(const CandArgs *a, Py_ssize_t *where, Py_ssize_t *count)
{
    Py_ssize_t n = 0;
    uint64_t *scratch = NULL;
    int err = OK;
    HourCache hour = {0, 0, 0};
    Channels channels = {NULL, 0, 0, NULL, 0};
    for (Py_ssize_t r = 0; r < a->nreq && channels.bits == NULL; r++)
        if (a->chan_off[r + 1] != a->chan_off[r]) /* some request lists channels (the bits are optional) */
            channels.bits = PyMem_RawMalloc(CHANNEL_BITS / 8);
    for (Py_ssize_t r = 0; r < a->nreq; r++) {
        a->bounds[r] = n;
        int64_t t0 = a->t0[r], co = a->chan_off[r], ce = a->chan_off[r + 1];
        if (co < 0 || ce < co || ce > a->nchans) {
            *where = r;
            err = E_CHANS;
            break;
        }
        channels_set(&channels, a->chans + co, (Py_ssize_t)(ce - co));
        const uint64_t *seen = NULL;
        Py_ssize_t nseen = 0;
        if (a->exclude[r] && (err = watched_row(a, a->households[r], &seen, &nseen, &scratch)) != OK) {
            *where = r;
            break;
        }
        for (int64_t j = a->lo[r]; j < a->hi[r]; j++) {
            int64_t start = a->start[j];
            if (start < t0 && wrap_sub(a->stop[j], t0) < a->min_remaining)
                continue;
            if (channels.n && !channels_have(&channels, a->channel[j]))
                continue;
            if (nseen) {
                uint64_t pr = a->programme[j];
                Py_ssize_t p = lower_u64(seen, nseen, pr);
                if (p < nseen && seen[p] == pr)
                    continue;
            }
            a->cand[n] = j;
            a->dps[n] = daypart(a, &hour, start > t0 ? start : t0);
            n++;
        }
    }
    a->bounds[a->nreq] = n;
    *count = n;
    PyMem_RawFree(scratch);
    PyMem_RawFree(channels.bits);
    return err;
}

const char st_candidates_doc[] =
    "candidates(t0, t1, chan_off, chans, exclude, households, watched_ids, watched_indptr, watched_programmes,\n"
    "           start_ms, stop_ms, channel_id, programme_id, hour_table, bounds, max_length_ms,\n"
    "           min_remaining_ms, offset_ms) -> (cand: bytearray of int64, dps: bytearray of int8)\n\n"
    "Per request r: t0/t1 int64, the sorted uint32 channels chans[chan_off[r]:chan_off[r + 1]] (none: no\n"
    "filter), exclude uint8 and households uint64 (Watched's household_ids, indptr int64 and programme_ids\n"
    "for the exclusion). The schedule's columns; hour_table int8 (24). Writes bounds int64 (requests + 1):\n"
    "request r's candidates are cand[bounds[r]:bounds[r + 1]], ascending.";

PyObject *st_candidates(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != C_N + 3) {
        PyErr_Format(PyExc_TypeError, "candidates() takes %d arguments", C_N + 3);
        return NULL;
    }
    long long max_length = PyLong_AsLongLong(args[C_N]), min_remaining = PyLong_AsLongLong(args[C_N + 1]);
    long long offset = PyLong_AsLongLong(args[C_N + 2]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer v[C_N];
    Py_ssize_t len[C_N];
    if (get_buffers("candidates", args, cand_spec, C_N, v, len) < 0)
        return NULL;
    PyObject *cand = NULL, *dps = NULL, *result = NULL;
    CandArgs a = {
        .t0 = v[C_T0].buf, .t1 = v[C_T1].buf, .chan_off = v[C_CHAN_OFF].buf, .w_indptr = v[C_W_INDPTR].buf,
        .start = v[C_START].buf, .stop = v[C_STOP].buf, .chans = v[C_CHANS].buf, .channel = v[C_CHANNEL].buf,
        .exclude = v[C_EXCLUDE].buf, .households = v[C_HOUSEHOLDS].buf, .w_ids = v[C_W_IDS].buf,
        .w_programmes = v[C_W_PROGRAMMES].buf, .programme = v[C_PROGRAMME].buf, .hours = v[C_HOURS].buf,
        .bounds = v[C_BOUNDS].buf, .nreq = len[C_T0], .nsched = len[C_START], .nchans = len[C_CHANS],
        .nw = len[C_W_IDS], .nwp = len[C_W_PROGRAMMES], .max_length = max_length, .min_remaining = min_remaining,
        .offset = offset,
    };
    if (len[C_T1] != a.nreq || len[C_CHAN_OFF] != a.nreq + 1 || len[C_EXCLUDE] != a.nreq ||
        len[C_HOUSEHOLDS] != a.nreq || len[C_BOUNDS] != a.nreq + 1 || len[C_W_INDPTR] != a.nw + 1 ||
        len[C_STOP] != a.nsched || len[C_CHANNEL] != a.nsched || len[C_PROGRAMME] != a.nsched || len[C_HOURS] != 24) {
        PyErr_SetString(PyExc_ValueError, "candidates(): buffer lengths do not agree");
        goto done;
    }
    for (Py_ssize_t i = 0; i < 24; i++) {
        if (a.hours[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "candidates(): a negative daypart in hour_table");
            goto done;
        }
    }
    a.lo = PyMem_Malloc(sizeof(int64_t) * (size_t)(2 * a.nreq + 1));
    if (a.lo == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    a.hi = a.lo + a.nreq;
    Py_ssize_t total = 0;
    for (Py_ssize_t r = 0; r < a.nreq; r++) {  /* the windows: two binary searches each */
        a.lo[r] = lower_i64(a.start, a.nsched, wrap_sub(a.t0[r], a.max_length));
        a.hi[r] = lower_i64(a.start, a.nsched, a.t1[r]);
        total += a.hi[r] > a.lo[r] ? (Py_ssize_t)(a.hi[r] - a.lo[r]) : 0;
    }
    cand = PyByteArray_FromStringAndSize(NULL, total * 8);
    dps = PyByteArray_FromStringAndSize(NULL, total);
    if (cand == NULL || dps == NULL)
        goto done;
    a.cand = (int64_t *)PyByteArray_AS_STRING(cand);
    a.dps = (int8_t *)PyByteArray_AS_STRING(dps);
    Py_ssize_t where = 0, count = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = filter(&a, &where, &count);
    Py_END_ALLOW_THREADS
    if (err == E_NOMEM) {
        PyErr_NoMemory();
    } else if (err != OK) {
        PyErr_Format(PyExc_ValueError, "candidates(): %s of request %zd out of range",
                     err == E_CHANS ? "channel offsets" : "watched row", where);
    } else if (PyByteArray_Resize(cand, count * 8) == 0 && PyByteArray_Resize(dps, count) == 0) {
        result = PyTuple_Pack(2, cand, dps);
    }
done:
    PyMem_Free(a.lo);
    Py_XDECREF(cand);
    Py_XDECREF(dps);
    release_buffers(v, C_N);
    return result;
}
