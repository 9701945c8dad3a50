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
 *
 * Files: this one is the Python API (configure, count, decode: pass 1 sizes, pass 2 writes);
 * _fd_message.c reads one message (topic, envelope, events) and writes its rows; _fd_msgpack.h
 * is the msgpack reader it inlines; _fastdecode.h holds what they share.
 */
#include "_fastdecode.h"

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
