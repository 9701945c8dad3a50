/* Bulk decoder for telemetry wire format v1 (proto/TELEMETRY.md): msgpack payloads straight
 * into column buffers, without a Python object per event.
 *
 * The contract (collector/fastdecode.py wraps this module, collector/decoder.py uses it):
 * a message is accepted here only if the Python path (decode_envelope, check_event per event,
 * the corrected-time check) accepts it too, and then its columns are exactly the Python fast
 * path's. Everything unusual (nil, bool, float or bin where an int or str belongs, unknown or
 * duplicate envelope keys, maps or ext types, out-of-range values, bad UTF-8, a wrong topic,
 * trailing bytes, ...) is simply "not accepted here": the Python path decides its fate.
 *
 * Three calls: configure() once with the kind table (from proto.telemetry.KINDS, so the two
 * cannot drift), count() per message as it arrives (validate only; its event count or -1),
 * decode() per batch: pass 1 validates every message and sizes the buffers exactly, pass 2
 * parses the accepted ones again and writes. Integer columns come back as zero-filled
 * little-endian bytearrays, string fields as (row indices, list of str) for the rows that
 * carry one, device/region/firmware as one str per accepted message.
 *
 * Safety: every read is bounds-checked against the payload's end before it happens; counts
 * claimed by headers are never used to allocate (each element needs at least one byte, so a
 * loop over a huge claimed count ends at the first missing byte). Pass 2 cannot disagree
 * with pass 1 on a buffer held under the GIL; if it did, the call raises SystemError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_KIND 127       /* `kind` is an Enum8 column */
#define MAX_FIELDS 8       /* per kind */
#define MAX_COLUMNS 32     /* field columns */
#define MAX_DEPTH 3        /* nesting allowed inside ignored trailing event fields */
#define SANE_MS (INT64_C(1) << 53) /* bound on received/tolerance/future: no int64 overflow */

/* ---- configuration (set once by configure()) ----------------------------------------- */

typedef struct {
    int column;
    int is_str;
    uint64_t max; /* inclusive upper bound for ints, max length in code points for str */
} FieldSpec;

typedef struct {
    int known;
    int required;
    int nfields;
    FieldSpec fields[MAX_FIELDS];
} KindSpec;

static struct {
    int configured;
    KindSpec kinds[MAX_KIND + 1];
    int ncolumns;
    int width[MAX_COLUMNS]; /* bytes of an int column; 0 for a str column */
    Py_ssize_t max_payload, max_events, max_fw_len;
    int64_t max_ts_ms, min_plausible_ms, wire_version;
} cfg;

/* ---- msgpack reader ---------------------------------------------------------------------- */

enum { T_INT = 1, T_STR, T_ARRAY, T_MAP, T_SCALAR /* nil, bool, float, bin */ };

typedef struct {
    const uint8_t *p, *end;
} Reader;

typedef struct {
    int type;
    int neg;            /* T_INT: the value is negative (then `s` holds it) */
    uint64_t u;         /* T_INT >= 0: the value; T_ARRAY/T_MAP: element count; T_STR: length */
    int64_t s;
    const uint8_t *str; /* T_STR: the bytes (already bounds-checked) */
} Item;

static inline uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read one item's header (and, for str and bin, skip its bytes). 0 on truncation or an
 * encoding this decoder leaves to Python (ext, reserved 0xc1, a map where none belongs). */
static int next_item(Reader *r, Item *it)
{
    if (r->p >= r->end)
        return 0;
    uint8_t c = *r->p++;
    size_t left = (size_t)(r->end - r->p);
    int n = 0;        /* bytes of the big-endian number that follows */
    it->neg = 0;
    it->u = 0;
    if (c <= 0x7f) {
        it->type = T_INT;
        it->u = c;
        return 1;
    }
    if (c >= 0xe0) {
        it->type = T_INT;
        it->neg = 1;
        it->s = (int8_t)c;
        return 1;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        it->type = T_STR;
        it->u = c & 0x1f;
        goto str_bytes;
    }
    if (c >= 0x90 && c <= 0x9f) {
        it->type = T_ARRAY;
        it->u = c & 0x0f;
        return 1;
    }
    if (c >= 0x80 && c <= 0x8f) {
        it->type = T_MAP;
        it->u = c & 0x0f;
        return 1;
    }
    switch (c) {
    case 0xc0: case 0xc2: case 0xc3:
        it->type = T_SCALAR;
        return 1;
    case 0xca: case 0xcb:
        n = c == 0xca ? 4 : 8;
        if (left < (size_t)n)
            return 0;
        r->p += n;
        it->type = T_SCALAR;
        return 1;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        n = 1 << (c - 0xcc);
        if (left < (size_t)n)
            return 0;
        it->type = T_INT;
        it->u = be(r->p, n);
        r->p += n;
        return 1;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        n = 1 << (c - 0xd0);
        if (left < (size_t)n)
            return 0;
        uint64_t raw = be(r->p, n);
        r->p += n;
        int64_t v;
        if (n == 1) v = (int8_t)raw;
        else if (n == 2) v = (int16_t)raw;
        else if (n == 4) v = (int32_t)raw;
        else v = (int64_t)raw;
        it->type = T_INT;
        if (v < 0) {
            it->neg = 1;
            it->s = v;
        } else {
            it->u = (uint64_t)v;
        }
        return 1;
    }
    case 0xd9: case 0xda: case 0xdb:
        n = 1 << (c - 0xd9);
        if (left < (size_t)n)
            return 0;
        it->type = T_STR;
        it->u = be(r->p, n);
        r->p += n;
        goto str_bytes;
    case 0xc4: case 0xc5: case 0xc6: {
        n = 1 << (c - 0xc4);
        if (left < (size_t)n)
            return 0;
        uint64_t len = be(r->p, n);
        r->p += n;
        if ((uint64_t)(r->end - r->p) < len)
            return 0;
        r->p += len;
        it->type = T_SCALAR;
        return 1;
    }
    case 0xdc: case 0xdd: case 0xde: case 0xdf:
        n = (c == 0xdc || c == 0xde) ? 2 : 4;
        if (left < (size_t)n)
            return 0;
        it->type = c <= 0xdd ? T_ARRAY : T_MAP;
        it->u = be(r->p, n);
        r->p += n;
        return 1;
    default:
        return 0; /* 0xc1 and the ext family */
    }
str_bytes:
    if ((uint64_t)(r->end - r->p) < it->u)
        return 0;
    it->str = r->p;
    r->p += it->u;
    return 1;
}

/* The next item as a non-negative int (the common encodings inline); 0 for anything else. */
static inline int read_uint(Reader *r, uint64_t *v)
{
    if (r->p < r->end) {
        uint8_t c = *r->p;
        if (c <= 0x7f) {
            *v = c;
            r->p++;
            return 1;
        }
        if (c >= 0xcc && c <= 0xcf) {
            size_t n = (size_t)1 << (c - 0xcc);
            if ((size_t)(r->end - r->p) <= n)
                return 0;
            *v = be(r->p + 1, (int)n);
            r->p += n + 1;
            return 1;
        }
    }
    Item it; /* signed encodings of non-negative values, and everything else */
    if (!next_item(r, &it) || it.type != T_INT || it.neg)
        return 0;
    *v = it.u;
    return 1;
}

/* Strict UTF-8 as Python's decoder reads it: no overlongs, no surrogates, <= U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the first continuation byte */
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= (size_t)extra)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (int k = 2; k <= extra; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += extra + 1;
    }
    return 1;
}

/* Length in code points of valid UTF-8 (Python's len() of the decoded str). */
static uint64_t utf8_len(const uint8_t *s, size_t n)
{
    uint64_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (s[i] & 0xc0) != 0x80;
    return count;
}

/* A str whose length Python would see as <= max. */
static int str_ok(const Item *it, uint64_t max)
{
    if (!utf8_valid(it->str, it->u))
        return 0;
    return it->u <= max || utf8_len(it->str, it->u) <= max;
}

/* Skip a value Python decodes without fail and that nothing reads (a trailing event field
 * from a newer minor version, an envelope's events while the header is still being read). */
static int skip_value(Reader *r, int depth)
{
    Item it;
    if (!next_item(r, &it))
        return 0;
    switch (it.type) {
    case T_INT: case T_SCALAR:
        return 1;
    case T_STR:
        return utf8_valid(it.str, it.u);
    case T_ARRAY:
        if (depth >= MAX_DEPTH)
            return 0;
        for (uint64_t i = 0; i < it.u; i++)
            if (!skip_value(r, depth + 1))
                return 0;
        return 1;
    default:
        return 0; /* maps: unhashable keys and duplicates are Python's business */
    }
}

/* ---- output buffers ---------------------------------------------------------------------- */

enum { C_HOUSEHOLD, C_SEQ, C_KIND, C_DEVICE_TS, C_TS, C_RECEIVED, N_FIXED };
static const int fixed_width[N_FIXED] = {8, 8, 1, 8, 8, 8};

typedef struct {
    Py_ssize_t row, msg;               /* next row, next accepted message */
    uint8_t *fixed_at[N_FIXED];        /* the data of fixed[] and ints[] */
    uint8_t *ints_at[MAX_COLUMNS];
    PyObject *fixed[N_FIXED];          /* bytearray */
    PyObject *ints[MAX_COLUMNS];       /* bytearray for int columns */
    PyObject *sidx[MAX_COLUMNS];       /* bytes of int64 row indices for str columns */
    PyObject *svals[MAX_COLUMNS];      /* list of str, parallel to sidx */
    Py_ssize_t sfill[MAX_COLUMNS];
    PyObject *dev, *region, *fw;       /* list: one str per accepted message */
    PyObject *last_region, *last_fw;   /* borrowed from the lists: reused while equal */
} Out;

static void out_clear(Out *o)
{
    for (int i = 0; i < N_FIXED; i++)
        Py_CLEAR(o->fixed[i]);
    for (int i = 0; i < MAX_COLUMNS; i++) {
        Py_CLEAR(o->ints[i]);
        Py_CLEAR(o->sidx[i]);
        Py_CLEAR(o->svals[i]);
    }
    Py_CLEAR(o->dev);
    Py_CLEAR(o->region);
    Py_CLEAR(o->fw);
}

static inline void put_le(uint8_t *base, Py_ssize_t row, int width, uint64_t v)
{
#if PY_LITTLE_ENDIAN
    switch (width) { /* fixed-size memcpy: one store */
    case 1: { uint8_t x = (uint8_t)v; memcpy(base + row, &x, 1); return; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(base + 2 * row, &x, 2); return; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(base + 4 * row, &x, 4); return; }
    default: memcpy(base + 8 * row, &v, 8); return;
    }
#else
    uint8_t *p = base + row * width;
    for (int i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
#endif
}

static PyObject *new_str(const uint8_t *s, size_t n)
{
    return PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, NULL);
}

/* The same str object as the previous message's when the text is equal: fewer objects, and
 * longer runs of one pointer for warehouse.fastcolumns. Returns a new reference. */
static PyObject *reuse_str(PyObject *last, const uint8_t *s, size_t n)
{
    if (last != NULL) {
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(last, &len);
        if (text != NULL && (size_t)len == n && memcmp(text, s, n) == 0) {
            Py_INCREF(last);
            return last;
        }
        PyErr_Clear();
    }
    return new_str(s, n);
}

/* ---- one message ------------------------------------------------------------------------- */

typedef struct {
    int64_t tolerance_ms, max_future_ms;
} Params;

enum { K_V, K_DEV, K_HH, K_FW, K_SEQ0, K_SENT, K_EV, N_KEYS };

static int key_index(const Item *it)
{
    const char *k = (const char *)it->str;
    switch (it->u) {
    case 1: return k[0] == 'v' ? K_V : -1;
    case 2: return memcmp(k, "hh", 2) == 0 ? K_HH : memcmp(k, "fw", 2) == 0 ? K_FW : memcmp(k, "ev", 2) == 0 ? K_EV : -1;
    case 3: return memcmp(k, "dev", 3) == 0 ? K_DEV : -1;
    case 4: return memcmp(k, "seq0", 4) == 0 ? K_SEQ0 : memcmp(k, "sent", 4) == 0 ? K_SENT : -1;
    default: return -1;
    }
}

static int device_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int region_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* stb/v1/<region [a-z0-9-]{1,32}>/<device [A-Za-z0-9._-]{1,64}>/events, as parse_topic. */
static int parse_topic(PyObject *topic, const uint8_t **region, size_t *region_len, const uint8_t **device,
                       size_t *device_len)
{
    if (!PyUnicode_Check(topic))
        return 0;
    Py_ssize_t n;
    const uint8_t *t = (const uint8_t *)PyUnicode_AsUTF8AndSize(topic, &n);
    if (t == NULL) { /* lone surrogates: Python's regex will say bad_topic */
        PyErr_Clear();
        return 0;
    }
    const uint8_t *end = t + n, *p = t;
    if (n < 7 || memcmp(p, "stb/v1/", 7) != 0)
        return 0;
    p += 7;
    *region = p;
    while (p < end && region_char(*p))
        p++;
    *region_len = (size_t)(p - *region);
    if (*region_len < 1 || *region_len > 32 || p >= end || *p != '/')
        return 0;
    *device = ++p;
    while (p < end && device_char(*p))
        p++;
    *device_len = (size_t)(p - *device);
    if (*device_len < 1 || *device_len > 64)
        return 0;
    return end - p == 7 && memcmp(p, "/events", 7) == 0;
}

/* One event at r. Validates (and writes row `row` when `o` is set). 1 ok, 0 not accepted
 * here, -1 error set. `nstr` counts the str values per column for buffer sizing. */
static int parse_event(Reader *r, int64_t offset, int64_t received, const Params *prm, Py_ssize_t *nstr, Out *o,
                       Py_ssize_t row)
{
    Item it;
    uint64_t kind, ts_u, value;
    if (!next_item(r, &it) || it.type != T_ARRAY || it.u < 2)
        return 0;
    uint64_t given = it.u - 2;
    if (!read_uint(r, &kind) || kind > MAX_KIND)
        return 0;
    const KindSpec *spec = &cfg.kinds[kind];
    if (!spec->known)
        return 0;
    if (!read_uint(r, &ts_u) || ts_u > (uint64_t)cfg.max_ts_ms)
        return 0;
    int64_t ts = (int64_t)ts_u, corrected = ts + offset;
    if (corrected < cfg.min_plausible_ms || corrected > received + prm->max_future_ms)
        return 0;
    if (given < (uint64_t)spec->required)
        return 0;
    if (o != NULL) {
        put_le(o->fixed_at[C_KIND], row, 1, kind);
        put_le(o->fixed_at[C_DEVICE_TS], row, 8, (uint64_t)ts);
        put_le(o->fixed_at[C_TS], row, 8, (uint64_t)corrected);
    }
    for (uint64_t i = 0; i < given; i++) {
        if (i >= (uint64_t)spec->nfields) {
            if (!skip_value(r, 2)) /* depth as when the whole `ev` is skipped */
                return 0;
            continue;
        }
        const FieldSpec *f = &spec->fields[i];
        if (f->is_str) {
            if (!next_item(r, &it) || it.type != T_STR || !str_ok(&it, f->max))
                return 0;
            nstr[f->column]++;
            if (o != NULL) {
                Py_ssize_t k = o->sfill[f->column]++;
                if (k >= PyList_GET_SIZE(o->svals[f->column])) {
                    PyErr_SetString(PyExc_SystemError, "_fastdecode: string count changed between passes");
                    return -1;
                }
                PyObject *s = new_str(it.str, it.u);
                if (s == NULL)
                    return -1;
                PyList_SET_ITEM(o->svals[f->column], k, s);
                int64_t at = (int64_t)row;
                memcpy(PyBytes_AS_STRING(o->sidx[f->column]) + 8 * k, &at, 8); /* native = LE here */
            }
        } else {
            if (!read_uint(r, &value) || value > f->max)
                return 0;
            if (o != NULL)
                put_le(o->ints_at[f->column], row, cfg.width[f->column], value);
        }
    }
    return 1;
}

/* Returns the message's event count when it is accepted here, 0 when not, -1 with an
 * exception set (only when writing). */
static Py_ssize_t parse_message(PyObject *topic, const uint8_t *buf, Py_ssize_t len, int64_t received,
                                const Params *prm, Py_ssize_t *nstr, Out *o)
{
    const uint8_t *region, *device;
    size_t region_len, device_len;
    if (len > cfg.max_payload || !parse_topic(topic, &region, &region_len, &device, &device_len))
        return 0;
    if (received < -SANE_MS || received > SANE_MS)
        return 0;

    Reader r = {buf, buf + len};
    Item it, fw = {0}, val;
    if (!next_item(&r, &it) || it.type != T_MAP || it.u > N_KEYS)
        return 0;
    uint64_t npairs = it.u, hh = 0, seq0 = 0, nev = 0;
    int64_t sent = 0;
    unsigned seen = 0;
    Reader events = {NULL, NULL};
    int events_last = 0;
    for (uint64_t i = 0; i < npairs; i++) {
        if (!next_item(&r, &it) || it.type != T_STR)
            return 0;
        int k = key_index(&it);
        if (k < 0 || (seen & (1u << k)))
            return 0; /* unknown extra keys and duplicates: Python decides */
        seen |= 1u << k;
        if (!next_item(&r, &val))
            return 0;
        switch (k) {
        case K_V:
            if (val.type != T_INT || val.neg || val.u != (uint64_t)cfg.wire_version)
                return 0;
            break;
        case K_DEV:
            if (val.type != T_STR || val.u != device_len || memcmp(val.str, device, device_len) != 0)
                return 0;
            break;
        case K_FW:
            if (val.type != T_STR || !str_ok(&val, (uint64_t)cfg.max_fw_len))
                return 0;
            fw = val;
            break;
        case K_HH:
        case K_SEQ0:
            if (val.type != T_INT || val.neg)
                return 0;
            *(k == K_HH ? &hh : &seq0) = val.u;
            break;
        case K_SENT:
            if (val.type != T_INT || val.neg || val.u == 0 || val.u > (uint64_t)cfg.max_ts_ms)
                return 0;
            sent = (int64_t)val.u;
            break;
        case K_EV:
            if (val.type != T_ARRAY || val.u < 1 || val.u > (uint64_t)cfg.max_events)
                return 0;
            nev = val.u;
            events.p = r.p;
            events.end = r.end;
            events_last = i + 1 == npairs;
            if (!events_last) /* the header that follows decides the clock offset: come back */
                for (uint64_t e = 0; e < nev; e++)
                    if (!skip_value(&r, 1))
                        return 0;
            break;
        }
    }
    if (seen != (1u << N_KEYS) - 1 || seq0 > UINT64_MAX - (nev - 1))
        return 0;
    if (!events_last && r.p != r.end)
        return 0; /* trailing bytes: msgpack.unpackb refuses them */

    int64_t offset = received - sent;
    if (offset <= prm->tolerance_ms && -offset <= prm->tolerance_ms)
        offset = 0;
    Py_ssize_t row0 = o != NULL ? o->row : 0;
    for (uint64_t e = 0; e < nev; e++) {
        int ok = parse_event(&events, offset, received, prm, nstr, o, row0 + (Py_ssize_t)e);
        if (ok <= 0)
            return ok;
        if (o != NULL) {
            Py_ssize_t row = row0 + (Py_ssize_t)e;
            put_le(o->fixed_at[C_HOUSEHOLD], row, 8, hh);
            put_le(o->fixed_at[C_SEQ], row, 8, seq0 + e);
            put_le(o->fixed_at[C_RECEIVED], row, 8, (uint64_t)received);
        }
    }
    if (events_last && events.p != events.end)
        return 0;
    if (o != NULL) {
        PyObject *d = new_str(device, device_len);
        if (d == NULL)
            return -1;
        PyList_SET_ITEM(o->dev, o->msg, d);
        PyObject *g = reuse_str(o->last_region, region, region_len);
        if (g == NULL)
            return -1;
        PyList_SET_ITEM(o->region, o->msg, g);
        o->last_region = g;
        PyObject *f = reuse_str(o->last_fw, fw.str, fw.u);
        if (f == NULL)
            return -1;
        PyList_SET_ITEM(o->fw, o->msg, f);
        o->last_fw = f;
        o->msg++;
        o->row += (Py_ssize_t)nev;
    }
    return (Py_ssize_t)nev;
}

/* ---- Python API -------------------------------------------------------------------------- */

/* tolerance_ms, max_future_ms → Params; 0 when out of the range this code reasons about. */
static int get_params(PyObject *tol, PyObject *fut, Params *prm)
{
    prm->tolerance_ms = PyLong_AsLongLong(tol);
    if (prm->tolerance_ms == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    prm->max_future_ms = PyLong_AsLongLong(fut);
    if (prm->max_future_ms == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return cfg.configured && prm->tolerance_ms >= -SANE_MS && prm->tolerance_ms <= SANE_MS &&
           prm->max_future_ms >= -SANE_MS && prm->max_future_ms <= SANE_MS;
}

static int get_ms(PyObject *obj, int64_t *out)
{
    if (!PyLong_Check(obj))
        return 0;
    *out = PyLong_AsLongLong(obj);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* One message: payload bytes (or any buffer), topic str, received_ms int. 0 when any input
 * is not what this code reads (Python decides). */
static Py_ssize_t run_one(PyObject *topic, PyObject *payload, PyObject *received_obj, const Params *prm,
                          Py_ssize_t *nstr, Out *o)
{
    int64_t received;
    if (!get_ms(received_obj, &received))
        return 0;
    if (PyBytes_Check(payload))
        return parse_message(topic, (const uint8_t *)PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                             received, prm, nstr, o);
    Py_buffer view;
    if (PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n = parse_message(topic, (const uint8_t *)view.buf, view.len, received, prm, nstr, o);
    PyBuffer_Release(&view);
    return n;
}

PyDoc_STRVAR(count_doc, "count(topic, payload, received_ms, tolerance_ms, max_future_ms) -> int\n\n"
                        "The message's event count if this decoder accepts it, else -1.");

static PyObject *fd_count(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "count() takes 5 arguments");
        return NULL;
    }
    Params prm;
    Py_ssize_t nstr[MAX_COLUMNS] = {0};
    Py_ssize_t n = get_params(args[3], args[4], &prm) ? run_one(args[0], args[1], args[2], &prm, nstr, NULL) : 0;
    return PyLong_FromSsize_t(n > 0 ? n : -1);
}

PyDoc_STRVAR(decode_doc,
             "decode(payloads, topics, received_ms, tolerance_ms, max_future_ms) -> tuple\n\n"
             "Lists of bytes, str and int, one item per message. Returns (status, counts, fixed, fields,\n"
             "devices, regions, firmwares): status has one byte per message (1 accepted here), counts\n"
             "one int64 per message (its rows, 0 if not accepted); fixed: bytearrays household_id u64,\n"
             "seq u64, kind i8, device_ts_ms i64, ts_ms i64, received_ms i64; fields: per configured\n"
             "column a bytearray (int) or (int64 row indices, list of str); then one str per accepted\n"
             "message. Rows follow the accepted messages in order.");

static PyObject *fd_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "decode() takes 3 lists and 2 ints");
        return NULL;
    }
    PyObject *payloads = args[0], *topics = args[1], *received = args[2];
    Py_ssize_t m = PyList_GET_SIZE(payloads);
    if (PyList_GET_SIZE(topics) != m || PyList_GET_SIZE(received) != m) {
        PyErr_SetString(PyExc_ValueError, "decode(): lists of different lengths");
        return NULL;
    }
    Params prm;
    int usable = get_params(args[3], args[4], &prm);
    Out o;
    memset(&o, 0, sizeof o);
    PyObject *status = PyBytes_FromStringAndSize(NULL, m);
    PyObject *counts = PyBytes_FromStringAndSize(NULL, m * 8);
    PyObject *result = NULL;
    if (status == NULL || counts == NULL)
        goto done;
    char *st = PyBytes_AS_STRING(status);

    /* pass 1: validate, size */
    Py_ssize_t rows = 0, accepted = 0, nstr[MAX_COLUMNS] = {0};
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t mine[MAX_COLUMNS] = {0};
        Py_ssize_t n = usable ? run_one(PyList_GET_ITEM(topics, i), PyList_GET_ITEM(payloads, i),
                                        PyList_GET_ITEM(received, i), &prm, mine, NULL)
                              : 0;
        st[i] = n > 0;
        int64_t c = n > 0 ? n : 0;
        memcpy(PyBytes_AS_STRING(counts) + 8 * i, &c, 8);
        if (n > 0) {
            rows += n;
            accepted++;
            for (int c2 = 0; c2 < cfg.ncolumns; c2++)
                nstr[c2] += mine[c2];
        }
    }

    /* allocate exactly */
    for (int i = 0; i < N_FIXED; i++) {
        if ((o.fixed[i] = PyByteArray_FromStringAndSize(NULL, rows * fixed_width[i])) == NULL)
            goto done;
        o.fixed_at[i] = (uint8_t *)PyByteArray_AS_STRING(o.fixed[i]);
    }
    for (int c = 0; c < cfg.ncolumns; c++) {
        if (cfg.width[c]) {
            if ((o.ints[c] = PyByteArray_FromStringAndSize(NULL, rows * cfg.width[c])) == NULL)
                goto done;
            o.ints_at[c] = (uint8_t *)PyByteArray_AS_STRING(o.ints[c]);
            memset(o.ints_at[c], 0, (size_t)(rows * cfg.width[c])); /* absent → 0 */
        } else if ((o.sidx[c] = PyBytes_FromStringAndSize(NULL, nstr[c] * 8)) == NULL ||
                   (o.svals[c] = PyList_New(nstr[c])) == NULL) {
            goto done;
        }
    }
    if ((o.dev = PyList_New(accepted)) == NULL || (o.region = PyList_New(accepted)) == NULL ||
        (o.fw = PyList_New(accepted)) == NULL)
        goto done;

    /* pass 2: write */
    for (Py_ssize_t i = 0; i < m; i++) {
        if (!st[i])
            continue;
        Py_ssize_t mine[MAX_COLUMNS] = {0};
        Py_ssize_t before = o.row;
        Py_ssize_t n = run_one(PyList_GET_ITEM(topics, i), PyList_GET_ITEM(payloads, i), PyList_GET_ITEM(received, i),
                               &prm, mine, &o);
        if (n < 0)
            goto done;
        if (n == 0 || o.row != before + n) {
            PyErr_SetString(PyExc_SystemError, "_fastdecode: a message changed between passes");
            goto done;
        }
    }
    for (int c = 0; c < cfg.ncolumns; c++) {
        if (!cfg.width[c] && o.sfill[c] != nstr[c]) {
            PyErr_SetString(PyExc_SystemError, "_fastdecode: string count changed between passes");
            goto done;
        }
    }

    /* assemble; each SET_ITEM steals the reference, so the Out slots are cleared as they go */
    PyObject *fixed = PyTuple_New(N_FIXED), *fields = PyTuple_New(cfg.ncolumns);
    if (fixed == NULL || fields == NULL) {
        Py_XDECREF(fixed);
        Py_XDECREF(fields);
        goto done;
    }
    for (int i = 0; i < N_FIXED; i++) {
        PyTuple_SET_ITEM(fixed, i, o.fixed[i]);
        o.fixed[i] = NULL;
    }
    for (int c = 0; c < cfg.ncolumns; c++) {
        PyObject *item;
        if (cfg.width[c]) {
            item = o.ints[c];
            o.ints[c] = NULL;
        } else {
            item = PyTuple_Pack(2, o.sidx[c], o.svals[c]);
            if (item == NULL) {
                Py_DECREF(fixed);
                Py_DECREF(fields);
                goto done;
            }
        }
        PyTuple_SET_ITEM(fields, c, item);
    }
    result = PyTuple_New(7);
    if (result == NULL) {
        Py_DECREF(fixed);
        Py_DECREF(fields);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, status);
    PyTuple_SET_ITEM(result, 1, counts);
    PyTuple_SET_ITEM(result, 2, fixed);
    PyTuple_SET_ITEM(result, 3, fields);
    PyTuple_SET_ITEM(result, 4, o.dev);
    PyTuple_SET_ITEM(result, 5, o.region);
    PyTuple_SET_ITEM(result, 6, o.fw);
    status = counts = NULL;
    o.dev = o.region = o.fw = NULL;
done:
    Py_XDECREF(status);
    Py_XDECREF(counts);
    out_clear(&o);
    return result;
}

PyDoc_STRVAR(configure_doc,
             "configure(kinds, widths, limits)\n\n"
             "kinds: [(code, required, [(column, is_str, max), ...]), ...]; widths: bytes per field\n"
             "column, 0 for str; limits: (max_payload, max_events, max_fw_len, max_ts_ms,\n"
             "min_plausible_ms, wire_version).");

static PyObject *fd_configure(PyObject *self, PyObject *args)
{
    PyObject *kinds, *widths;
    Py_ssize_t max_payload, max_events, max_fw_len;
    long long max_ts, min_plausible, version;
    if (!PyArg_ParseTuple(args, "O!O!(nnnLLL)", &PyList_Type, &kinds, &PyList_Type, &widths, &max_payload,
                          &max_events, &max_fw_len, &max_ts, &min_plausible, &version))
        return NULL;
    cfg.configured = 0;
    memset(cfg.kinds, 0, sizeof cfg.kinds);
    Py_ssize_t ncol = PyList_GET_SIZE(widths);
    if (ncol > MAX_COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "too many field columns");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < ncol; c++) {
        long w = PyLong_AsLong(PyList_GET_ITEM(widths, c));
        if (w == -1 && PyErr_Occurred())
            return NULL;
        if (w != 0 && w != 1 && w != 2 && w != 4 && w != 8) {
            PyErr_SetString(PyExc_ValueError, "a column width is 0 (str), 1, 2, 4 or 8");
            return NULL;
        }
        cfg.width[c] = (int)w;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(kinds); i++) {
        int code, required;
        PyObject *fields;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(kinds, i), "iiO!", &code, &required, &PyList_Type, &fields))
            return NULL;
        Py_ssize_t nf = PyList_GET_SIZE(fields);
        if (code < 0 || code > MAX_KIND || nf > MAX_FIELDS || required < 0 || required > nf) {
            PyErr_Format(PyExc_ValueError, "kind %d does not fit this decoder", code);
            return NULL;
        }
        KindSpec *spec = &cfg.kinds[code];
        for (Py_ssize_t j = 0; j < nf; j++) {
            FieldSpec *f = &spec->fields[j];
            unsigned long long max;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, j), "ipK", &f->column, &f->is_str, &max))
                return NULL;
            f->max = max;
            int w = f->column >= 0 && f->column < ncol ? cfg.width[f->column] : -1;
            if (w < 0 || (w == 0) != (f->is_str != 0) || (w > 0 && w < 8 && max >> (8 * w))) {
                PyErr_Format(PyExc_ValueError, "kind %d field %zd does not fit its column", code, j);
                return NULL;
            }
        }
        spec->required = required;
        spec->nfields = (int)nf;
        spec->known = 1;
    }
    if (max_ts < 0 || max_ts > SANE_MS) {
        PyErr_SetString(PyExc_ValueError, "max_ts_ms out of range");
        return NULL;
    }
    cfg.ncolumns = (int)ncol;
    cfg.max_payload = max_payload;
    cfg.max_events = max_events;
    cfg.max_fw_len = max_fw_len;
    cfg.max_ts_ms = max_ts;
    cfg.min_plausible_ms = min_plausible;
    cfg.wire_version = version;
    cfg.configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", fd_configure, METH_VARARGS, configure_doc},
    {"count", (PyCFunction)(void (*)(void))fd_count, METH_FASTCALL, count_doc},
    {"decode", (PyCFunction)(void (*)(void))fd_decode, METH_FASTCALL, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastdecode", "Bulk msgpack decoder for telemetry wire format v1.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastdecode(void)
{
    return PyModule_Create(&module);
}
