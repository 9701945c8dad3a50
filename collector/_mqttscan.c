/* The collector's per-packet hot path: consecutive plain MQTT 5 PUBLISH packets in the bytes
 * read from the broker become `Message`s in one C call (collector/mqtt_protocol.py uses it).
 *
 * With one-event messages, decoding each packet with the `mqtt5` codec (a packet object, its
 * properties, a memoryview slice per packet) and building the Message in a Python loop was the
 * collector's largest cost. This handles only the plain case, which is what a broker forwards
 * from our firmware: QoS 0 or 1 (DUP only with QoS 1), a printable-ASCII topic without `+` or
 * `#`, a non-zero packet id, no properties. It stops in front of anything else (a control
 * packet, properties, an unusual topic, a malformed or incomplete packet) and the caller hands
 * that one packet to the codec, which decides what it is. So for every packet taken here the
 * codec would have produced the same topic, payload, packet id and DUP flag (tested against it:
 * tests/unit/test_mqttscan.py).
 *
 * publishes(data, start, make, received_ms, session, out) -> (end, count, payload_bytes)
 *   data: a bytes-like object; packets are read from `start`; `out.append(make(topic, payload,
 *   mid, dup, received_ms, session))` for each, in order; `end` is where the first packet not
 *   taken begins (len(data) if all were).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Remaining length (a variable-byte integer of 1..4 bytes) at p[1..]; the fixed header's size
 * in *hdr. 0: incomplete; -1: malformed (more than 4 bytes), left to the codec. */
static int remaining_length(const uint8_t *p, Py_ssize_t avail, Py_ssize_t *value, Py_ssize_t *hdr)
{
    Py_ssize_t v = 0;
    for (int i = 1; i <= 4; i++) {
        if (i >= avail)
            return 0;
        v |= (Py_ssize_t)(p[i] & 0x7F) << (7 * (i - 1));
        if (p[i] < 0x80) {
            *value = v;
            *hdr = i + 1;
            return 1;
        }
    }
    return -1;
}

static int plain_topic(const uint8_t *s, Py_ssize_t n)
{
    if (n == 0)
        return 0; /* an empty topic means a topic alias: the codec's business */
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20 || c > 0x7E || c == '+' || c == '#')
            return 0;
    }
    return 1;
}

static PyObject *scan_publishes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "publishes(data, start, make, received_ms, session, out)");
        return NULL;
    }
    PyObject *make = args[2], *received = args[3], *session = args[4], *out = args[5];
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "out must be a list");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *buf = (const uint8_t *)view.buf;
    Py_ssize_t len = view.len, pos = start < 0 ? len : start, count = 0, nbytes = 0;
    int failed = 0;
    while (pos < len) {
        const uint8_t *p = buf + pos;
        uint8_t flags = p[0];
        if ((flags >> 4) != 3)
            break; /* not a PUBLISH */
        int qos = (flags >> 1) & 3, dup = (flags >> 3) & 1;
        if (qos > 1 || (dup && qos == 0))
            break;
        Py_ssize_t rem, hdr;
        if (remaining_length(p, len - pos, &rem, &hdr) != 1 || rem > len - pos - hdr)
            break; /* incomplete or malformed */
        const uint8_t *body = p + hdr, *end = body + rem;
        if (rem < 2)
            break;
        Py_ssize_t tlen = ((Py_ssize_t)body[0] << 8) | body[1];
        const uint8_t *topic = body + 2, *q = topic + tlen;
        if (q > end || !plain_topic(topic, tlen))
            break;
        long mid = 0;
        if (qos == 1) {
            if (end - q < 2)
                break;
            mid = ((long)q[0] << 8) | q[1];
            if (mid == 0)
                break;
            q += 2;
        }
        if (q >= end || *q != 0)
            break; /* properties (or no property length at all): the codec reads those */
        q += 1;
        PyObject *t = PyUnicode_DecodeASCII((const char *)topic, tlen, NULL);
        PyObject *payload = t ? PyBytes_FromStringAndSize((const char *)q, end - q) : NULL;
        PyObject *m = payload ? PyLong_FromLong(mid) : NULL;
        PyObject *msg = NULL;
        if (m) {
            PyObject *call[6] = {t, payload, m, dup ? Py_True : Py_False, received, session};
            msg = PyObject_Vectorcall(make, call, 6, NULL);
        }
        Py_XDECREF(t);
        Py_XDECREF(payload);
        Py_XDECREF(m);
        if (msg == NULL || PyList_Append(out, msg) < 0) {
            Py_XDECREF(msg);
            failed = 1;
            break;
        }
        Py_DECREF(msg);
        nbytes += end - q;
        count++;
        pos = end - buf;
    }
    PyBuffer_Release(&view);
    if (failed)
        return NULL;
    return Py_BuildValue("nnn", pos, count, nbytes);
}

static PyMethodDef methods[] = {
    {"publishes", (PyCFunction)(void (*)(void))scan_publishes, METH_FASTCALL,
     "publishes(data, start, make, received_ms, session, out) -> (end, count, payload_bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mqttscan", "Plain MQTT 5 PUBLISH packets to Messages in one call.", -1, methods,
};

PyMODINIT_FUNC PyInit__mqttscan(void)
{
    return PyModule_Create(&module);
}
