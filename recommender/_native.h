/* Shared by the recommender's native batch stages (_scorerank.c: the module and score_rank;
 * _stages.c: candidates, profiles, answers). One extension module, so one "is it built" flag. */
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

PyObject *st_candidates(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *st_profiles(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *st_answers(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
extern const char st_candidates_doc[], st_profiles_doc[], st_answers_doc[];

#endif
