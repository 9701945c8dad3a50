/* One telemetry message of the native decoder: topic, envelope and events validated as the
 * Python path would (see _fastdecode.c), and, in pass 2, its rows written to the output
 * buffers.
 */
#include "_fastdecode.h"
#include "_fd_msgpack.h"

FdConfig cfg;

void out_clear(Out *o)
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
Py_ssize_t parse_message(PyObject *topic, const uint8_t *buf, Py_ssize_t len, int64_t received,
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
