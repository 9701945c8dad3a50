/* The msgpack reader of the native telemetry decoder: bounds-checked item headers, unsigned
 * ints, strict UTF-8 and skipping of ignored values. Static functions in a header so that
 * _fd_message.c, its only includer, inlines them on the per-event path.
 */
#ifndef STB_FD_MSGPACK_H
#define STB_FD_MSGPACK_H

#include "_fastdecode.h"

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

#endif
