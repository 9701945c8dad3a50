/* The ranking's order and selection (used by _scorerank.c; see its header for the contract).
 *
 * Elements of a group are ordered by (-score, start_ms, position), NaN scores last. `take_keys`
 * finds the first airing of each new key along that order in rounds (a quickselect of the m
 * first on the full order, a sort of those, doubling m); `Top` keeps the best of a group as it
 * streams by, behind a bound that drops as it fills, so most elements cost one comparison.
 */
#include "_native.h"

#include <math.h>

/* The order of `best_airings` within a group: -score, then start_ms, then position; NaN last
 * (NaNs among themselves by start_ms and position, as numpy's lexsort puts them). */
static inline int before(const Elem *a, const Elem *b)
{
    if (a->neg != b->neg && !(isnan(a->neg) && isnan(b->neg))) {
        if (isnan(a->neg))
            return 0;
        if (isnan(b->neg))
            return 1;
        return a->neg < b->neg;
    }
    if (a->start != b->start)
        return a->start < b->start;
    return a->pos < b->pos;
}

static inline void swap(Elem *a, Elem *b)
{
    Elem t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(Elem *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        Elem x = v[i];
        Py_ssize_t j = i;
        while (j > 0 && before(&x, &v[j - 1])) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* Lomuto partition around the median of three; returns the pivot's final index. */
static Py_ssize_t partition(Elem *v, Py_ssize_t n)
{
    Py_ssize_t mid = n / 2, last = n - 1;
    if (before(&v[mid], &v[0]))
        swap(&v[mid], &v[0]);
    if (before(&v[last], &v[0]))
        swap(&v[last], &v[0]);
    if (before(&v[mid], &v[last]))
        swap(&v[mid], &v[last]); /* the median is now at `last` */
    Elem pivot = v[last];
    Py_ssize_t store = 0;
    for (Py_ssize_t i = 0; i < last; i++) {
        if (before(&v[i], &pivot)) {
            swap(&v[i], &v[store]);
            store++;
        }
    }
    swap(&v[store], &v[last]);
    return store;
}

static void sort(Elem *v, Py_ssize_t n)
{
    while (n > 16) {
        Py_ssize_t p = partition(v, n);
        if (p < n - 1 - p) { /* recurse into the smaller side: stack depth O(log n) */
            sort(v, p);
            v += p + 1;
            n -= p + 1;
        } else {
            sort(v + p + 1, n - p - 1);
            n = p;
        }
    }
    insertion_sort(v, n);
}

/* Reorder v so that its m first elements are the m first of the order (in any order). */
static void select_first(Elem *v, Py_ssize_t n, Py_ssize_t m)
{
    while (n > 16 && m > 0 && m < n) {
        Py_ssize_t p = partition(v, n);
        if (p == m || p + 1 == m)
            return;
        if (p > m) {
            n = p;
        } else {
            v += p + 1;
            n -= p + 1;
            m -= p + 1;
        }
    }
    if (m > 0 && m < n)
        insertion_sort(v, n);
}

/* The (k+1)-th smallest of x[0..n) (k < n), NaN-free; reorders x. Hoare partitions around the
 * median of three. */
static double kth_smallest(double *x, Py_ssize_t n, Py_ssize_t k)
{
    Py_ssize_t lo = 0, hi = n - 1;
    while (hi > lo) {
        double a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i <= j) {
                double t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return x[k];
    }
    return x[k];
}

/* Moves the elements with neg <= bound (never NaN) to the front; returns how many. With bound the
 * m-th smallest neg, they are a prefix of the order (every other one sorts after them), at least
 * m of them unless NaNs are among the m smallest. */
static Py_ssize_t front(Elem *v, Py_ssize_t n, double bound)
{
    Py_ssize_t c = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (v[i].neg <= bound) {
            if (i != c)
                swap(&v[i], &v[c]);
            c++;
        }
    }
    return c;
}

/* First airings of new keys along the order of v[0..n), until `k` keys in all; appends positions
 * to out. Returns the number of keys found (`found` on entry included). */
Py_ssize_t take_keys(Elem *v, Py_ssize_t n, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out)
{
    Py_ssize_t lo = 0, m = 8 * (k - found);
    if (m < 16)
        m = 16;
    while (lo < n && found < k) {
        Py_ssize_t take = n - lo < m ? n - lo : m;
        select_first(v + lo, n - lo, take);
        sort(v + lo, take);
        for (Py_ssize_t i = lo; i < lo + take && found < k; i++) {
            if (add_key(set, v[i].key))
                out[found++] = v[i].pos;
        }
        lo += take;
        m *= 2;
    }
    return found;
}

void top_init(Top *t, Elem *buf, double *vals, Py_ssize_t m)
{
    t->buf = buf;
    t->vals = vals;
    t->n = 0;
    t->m = m < 16 ? 16 : m;
    t->limit = 2 * t->m;
    t->bound = INFINITY;
}

void top_compact(Top *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++)
        t->vals[i] = t->buf[i].neg;
    t->bound = kth_smallest(t->vals, t->n, t->m - 1);
    t->n = front(t->buf, t->n, t->bound);
    t->limit = t->n + t->m > 2 * t->m ? t->n + t->m : 2 * t->m; /* ties can keep more than m */
}

/* Sorts what Top kept and takes keys from it. */
Py_ssize_t top_keys(Top *t, Py_ssize_t k, Py_ssize_t found, KeySet *set, int64_t *out)
{
    sort(t->buf, t->n);
    for (Py_ssize_t i = 0; i < t->n && found < k; i++) {
        if (add_key(set, t->buf[i].key))
            out[found++] = t->buf[i].pos;
    }
    return found;
}
