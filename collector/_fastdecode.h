/* Shared by the native telemetry decoder's files: _fastdecode.c (the Python API, passes 1
 * and 2 over a batch) and _fd_message.c (one message: topic, envelope, events, output rows);
 * _fd_msgpack.h is the msgpack reader the latter inlines. See _fastdecode.c for the contract.
 */
#ifndef STB_FASTDECODE_H
#define STB_FASTDECODE_H

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

typedef struct {
    int configured;
    KindSpec kinds[MAX_KIND + 1];
    int ncolumns;
    int width[MAX_COLUMNS]; /* bytes of an int column; 0 for a str column */
    Py_ssize_t max_payload, max_events, max_fw_len;
    int64_t max_ts_ms, min_plausible_ms, wire_version;
} FdConfig;

/* Symbols shared between the files stay inside the extension module. */
#define FD_INTERNAL __attribute__((visibility("hidden")))

extern FD_INTERNAL FdConfig cfg; /* set by configure() (_fastdecode.c), defined in _fd_message.c */

/* ---- output buffers (pass 2 writes them) ------------------------------------------------- */

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

FD_INTERNAL void out_clear(Out *o);

/* ---- one message ------------------------------------------------------------------------- */

typedef struct {
    int64_t tolerance_ms, max_future_ms;
} Params;

/* The message's event count when it is accepted here, 0 when not, -1 with an exception set
 * (only when writing, `o` not NULL). `nstr` counts the str values per column. */
FD_INTERNAL Py_ssize_t parse_message(PyObject *topic, const uint8_t *buf, Py_ssize_t len, int64_t received,
                                     const Params *prm, Py_ssize_t *nstr, Out *o);

#endif
