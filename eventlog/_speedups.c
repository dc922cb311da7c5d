/* Optional C speedups for eventlog (a pure-Python fallback does the same job).
 *
 * unchanged(containers, lens, keys, values) -> bool
 *
 * The identity check of eventlog.mirror.Mirror: True when every recorded container
 * (a dict or a list) still has its recorded length and holds, in order, the very
 * same key objects (dicts) and value objects as recorded in the flat lists `keys`
 * and `values`.  Only pointers are compared: no Python code runs, so nothing can
 * change the containers while they are walked, and borrowed references are safe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__linux__)
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels answer EINVAL */
#endif
#endif

/* 1 when unchanged, 0 when not, -1 with an exception set. */
static int
is_unchanged(PyObject *containers, PyObject *lens, PyObject *keys, PyObject *values)
{
    Py_ssize_t n = PyList_GET_SIZE(containers);
    Py_ssize_t nk = PyList_GET_SIZE(keys), nv = PyList_GET_SIZE(values);
    Py_ssize_t ki = 0, vi = 0;
    if (PyList_GET_SIZE(lens) != n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyList_GET_ITEM(containers, i);
        Py_ssize_t len = PyLong_AsSsize_t(PyList_GET_ITEM(lens, i));
        if (len == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (PyDict_CheckExact(c)) {
            if (PyDict_GET_SIZE(c) != len || len > nk - ki || len > nv - vi) {
                return 0;
            }
            Py_ssize_t pos = 0, seen = 0;
            PyObject *k, *v;
            while (PyDict_Next(c, &pos, &k, &v)) {
                if (seen == len || k != PyList_GET_ITEM(keys, ki) || v != PyList_GET_ITEM(values, vi)) {
                    return 0;
                }
                seen++;
                ki++;
                vi++;
            }
            if (seen != len) {
                return 0;
            }
        }
        else if (PyList_CheckExact(c)) {
            if (PyList_GET_SIZE(c) != len || len > nv - vi) {
                return 0;
            }
            PyObject **items = ((PyListObject *)c)->ob_item;
            for (Py_ssize_t j = 0; j < len; j++, vi++) {
                if (items[j] != PyList_GET_ITEM(values, vi)) {
                    return 0;
                }
            }
        }
        else {
            return 0;
        }
    }
    return ki == nk && vi == nv;
}

static PyObject *
unchanged(PyObject *module, PyObject *args)
{
    PyObject *containers, *lens, *keys, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!O!:unchanged", &PyList_Type, &containers, &PyList_Type, &lens,
                          &PyList_Type, &keys, &PyList_Type, &values)) {
        return NULL;
    }
    int r = is_unchanged(containers, lens, keys, values);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *copy_value(PyObject *v, int depth);

/* take(containers, lens, keys, values, items) -> list or None
 *
 * A copy of the list `items` (as copy() makes it) if unchanged() holds, else None: the
 * check and the copy in one call, during which no Python code runs, so nothing can
 * change the containers between the two.  The collector is off during the copy: on
 * Python 3.11 an allocation can start a collection there, whose finalizers are
 * Python code, during which another thread may take the GIL.
 */
static PyObject *
take(PyObject *module, PyObject *args)
{
    PyObject *containers, *lens, *keys, *values, *items;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!:take", &PyList_Type, &containers, &PyList_Type, &lens, &PyList_Type,
                          &keys, &PyList_Type, &values, &PyList_Type, &items)) {
        return NULL;
    }
    int r = is_unchanged(containers, lens, keys, values);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        Py_RETURN_NONE;
    }
    int was_enabled = PyGC_Disable();
    PyObject *out = copy_value(items, 0);
    if (was_enabled) {
        PyGC_Enable();
    }
    return out;
}

/* record(entries, containers, lens, keys, values) -> bool
 *
 * What eventlog.mirror.Mirror records of `entries` (a list), for unchanged() to check
 * later: every dict and list inside the entries, depth first, appended to
 * `containers` with its length to `lens`, and the keys and values each holds, in the
 * order unchanged() walks them, to `keys` and `values`.
 * False (the lists then hold part of a record, to be dropped) when a dict has a key
 * that is not an exact str.  No Python code runs during the walk.
 */
/* Append the dict or list `c` to `containers`, its length to `lens`, and what it holds
 * to `keys` and `values`: 1, or 0 for a dict key that is not an exact str, or -1 with an
 * exception set. */
static int
record_container(PyObject *c, PyObject *containers, PyObject *lens, PyObject *keys, PyObject *values)
{
    int is_dict = PyDict_CheckExact(c);
    Py_ssize_t n = is_dict ? PyDict_GET_SIZE(c) : PyList_GET_SIZE(c);
    PyObject *len = PyLong_FromSsize_t(n);
    if (len == NULL || PyList_Append(containers, c) < 0 || PyList_Append(lens, len) < 0) {
        Py_XDECREF(len);
        return -1;
    }
    Py_DECREF(len);
    if (is_dict) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(c, &pos, &k, &v)) {
            if (!PyUnicode_CheckExact(k)) {
                return 0;
            }
            if (PyList_Append(keys, k) < 0 || PyList_Append(values, v) < 0) {
                return -1;
            }
        }
        return 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_Append(values, PyList_GET_ITEM(c, i)) < 0) {
            return -1;
        }
    }
    return 1;
}

static int
record_value(PyObject *c, PyObject *containers, PyObject *lens, PyObject *keys, PyObject *values, int depth)
{
    if (depth > 10000) {
        PyErr_SetString(PyExc_RecursionError, "value nested too deeply to record");
        return -1;
    }
    int r = record_container(c, containers, lens, keys, values);
    if (r <= 0) {
        return r;
    }
    if (PyDict_CheckExact(c)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(c, &pos, &k, &v)) {
            if (PyDict_CheckExact(v) || PyList_CheckExact(v)) {
                r = record_value(v, containers, lens, keys, values, depth + 1);
                if (r <= 0) {
                    return r;
                }
            }
        }
        return 1;
    }
    Py_ssize_t n = PyList_GET_SIZE(c);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(c, i);
        if (PyDict_CheckExact(v) || PyList_CheckExact(v)) {
            r = record_value(v, containers, lens, keys, values, depth + 1);
            if (r <= 0) {
                return r;
            }
        }
    }
    return 1;
}

static PyObject *
record(PyObject *module, PyObject *args)
{
    PyObject *entries, *containers, *lens, *keys, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!:record", &PyList_Type, &entries, &PyList_Type, &containers,
                          &PyList_Type, &lens, &PyList_Type, &keys, &PyList_Type, &values)) {
        return NULL;
    }
    /* The entries list may not be one of the output lists: appending would walk it forever. */
    if (entries == containers || entries == lens || entries == keys || entries == values) {
        PyErr_SetString(PyExc_ValueError, "record() into the list it walks");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(entries);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(entries, i);
        if (PyDict_CheckExact(v) || PyList_CheckExact(v)) {
            int r = record_value(v, containers, lens, keys, values, 0);
            if (r < 0) {
                return NULL;
            }
            if (r == 0) {
                Py_RETURN_FALSE;
            }
        }
    }
    Py_RETURN_TRUE;
}

/* scan(value, threshold, max_depth) -> True, False or None
 *
 * The fast path of eventlog.values.validate: True when `value` is storable and may
 * hold a large leaf (a str of at least threshold/4 characters or bytes of at least
 * threshold bytes), False when it is storable and holds none, None when it is not
 * storable (an unsupported type, subclasses included, a non-str key, or nesting of
 * max_depth levels or more); the Python validator then raises the precise error.
 * Recursion is bounded by max_depth.
 */
static int
scan_value(PyObject *v, Py_ssize_t threshold, int depth, int max_depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) {
        return PyUnicode_GET_LENGTH(v) >= (threshold + 3) / 4;
    }
    if (t == &PyBytes_Type) {
        return PyBytes_GET_SIZE(v) >= threshold;
    }
    if (t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type || v == Py_None) {
        return 0;
    }
    int large = 0;
    if (t == &PyDict_Type) {
        if (depth >= max_depth) {
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (Py_TYPE(k) != &PyUnicode_Type) {
                return -1;
            }
            int r = scan_value(x, threshold, depth + 1, max_depth);
            if (r < 0) {
                return r;
            }
            large |= r;
        }
        return large;
    }
    if (t == &PyList_Type) {
        if (depth >= max_depth) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            int r = scan_value(PyList_GET_ITEM(v, i), threshold, depth + 1, max_depth);
            if (r < 0) {
                return r;
            }
            large |= r;
        }
        return large;
    }
    return -1;
}

static PyObject *
scan(PyObject *module, PyObject *args)
{
    PyObject *value;
    Py_ssize_t threshold;
    int max_depth;
    if (!PyArg_ParseTuple(args, "Oni:scan", &value, &threshold, &max_depth)) {
        return NULL;
    }
    int r = scan_value(value, threshold, 0, max_depth);
    if (r < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(r);
}

/* copy(value) -> a copy whose dicts and lists are new and whose leaves are shared
 *
 * The fast path of eventlog.values.copy, for values already validated or decoded
 * (dicts with str keys, lists, and immutable leaves).  Only exact dicts and lists
 * are copied; anything else is shared, as in the Python version.  No Python code
 * runs (str keys hash without it), so the source cannot change during the copy.
 * A dict is cloned whole (PyDict_Copy copies its table in one go, keeping the
 * order), then each value that is itself a container is replaced by its copy.
 */
static PyObject *
copy_value(PyObject *v, int depth)
{
    if (depth > 10000) {
        PyErr_SetString(PyExc_RecursionError, "value nested too deeply to copy");
        return NULL;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *out = PyDict_Copy(v);
        if (out == NULL) {
            return NULL;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!PyDict_CheckExact(x) && !PyList_CheckExact(x)) {
                continue;
            }
            PyObject *y = copy_value(x, depth + 1);
            /* Replacing the value of an existing key never resizes `out`. */
            if (y == NULL || PyDict_SetItem(out, k, y) < 0) {
                Py_XDECREF(y);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(y);
        }
        return out;
    }
    if (PyList_CheckExact(v)) {
        Py_ssize_t n = PyList_GET_SIZE(v);
        PyObject *out = PyList_New(n);
        if (out == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *y = copy_value(PyList_GET_ITEM(v, i), depth + 1);
            if (y == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, i, y);
        }
        return out;
    }
    Py_INCREF(v);
    return v;
}

static PyObject *
copy(PyObject *module, PyObject *value)
{
    return copy_value(value, 0);
}

/* decode(data, ref_hook, entries, max_depth[, record]) -> (value, markers) or None
 *
 * The fast path of eventlog.codec.loads for the CBOR eventlog writes: integers
 * (bignums, tags 2 and 3, beyond 64 bits), byte and text strings of definite
 * length, arrays, maps with text keys, false, true, null, floats, and eventlog's tags:
 * REF_TAG (its content is decoded, then passed to `ref_hook`, whose result takes its
 * place) and ENTRIES_TAG over null (replaced by `entries`, counted in `markers`).
 *
 * It gives up, returning None, on anything else (other tags, undefined and other
 * simple values, indefinite lengths, reserved bytes, invalid UTF-8, non-text
 * keys, nesting deeper than `max_depth`, truncation, trailing bytes): the caller
 * then decodes with cbor2, which decides what such input means or which error it
 * is.  So this path only ever returns what the general decoder would; apart from
 * errors raised by `ref_hook` (which the general decoder would call at the same
 * point), it is never the one to refuse input.  Lengths are checked against the bytes left
 * before anything is allocated, so a hostile length cannot allocate.
 *
 * With `record`, a tuple of four lists (containers, lens, keys, values), each dict
 * and list below the top level (outside REF_TAG contents) is appended as it is
 * completed, as record() would append it (children before their parent), for
 * unchanged() to check later: the values are then still in the cache.  On giving
 * up or failing, the lists are cut back to what they held.
 *
 * Short ASCII strings (map keys, and values like "assistant") are looked up in a
 * small cache of str objects instead of being built again: equal strings are
 * immutable and interchangeable, and a cached key keeps the hash its first dict
 * computed.
 */
#define GIVE_UP ((PyObject *)1) /* not an object: "let the general decoder do it" */
#define REF_TAG 59501
#define ENTRIES_TAG 59502
#define STR_CACHE_SIZE 4096
#define STR_CACHE_MAX_LEN 32

static PyObject *str_cache[STR_CACHE_SIZE];

typedef struct {
    const unsigned char *p, *end;
    PyObject *ref_hook, *entries;
    Py_ssize_t markers;
    int max_depth;
    /* With a record: the lists record() would fill, filled as containers complete. */
    PyObject *containers, *lens, *keys, *values;
    int in_ref; /* inside a REF_TAG's content, which the hook's result replaces */
} Decoder;

/* Record a dict or list the decoder just completed (see decode()). */
static int
record_done(Decoder *d, PyObject *c, int depth)
{
    if (d->containers == NULL || depth < 1 || d->in_ref) {
        return 0;
    }
    /* Keys the decoder builds are always exact str: never 0. */
    return record_container(c, d->containers, d->lens, d->keys, d->values) < 0 ? -1 : 0;
}

static PyObject *decode_item(Decoder *d, int depth);

/* The argument of the item whose initial byte's low five bits are `ai`; -1 to give up. */
static int
read_arg(Decoder *d, unsigned int ai, uint64_t *out)
{
    if (ai < 24) {
        *out = ai;
        return 0;
    }
    if (ai > 27) {
        return -1; /* reserved, or indefinite length */
    }
    size_t n = (size_t)1 << (ai - 24);
    if ((size_t)(d->end - d->p) < n) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | d->p[i];
    }
    d->p += n;
    *out = v;
    return 0;
}

/* The str of the n bytes at s if they are valid UTF-8 (exactly what
 * PyUnicode_DecodeUTF8 accepts in strict mode), else GIVE_UP.  Two passes: the first
 * validates, counts the characters and finds the largest (so the str is allocated once,
 * in its final, most compact kind), the second writes them, widening runs of ASCII 16
 * bytes at a time.  CPython's own decoder instead widens its buffer as it meets wider
 * characters, copying what it wrote, and shrinks it at the end. */
static inline int
utf8_sequence(const unsigned char *s, Py_ssize_t left, Py_UCS4 *cp)
{
    unsigned int c = s[0];
    if (c < 0xC2) { /* a continuation byte, or an overlong 2-byte lead */
        return 0;
    }
    if (c < 0xE0) {
        if (left < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)) return 0; /* overlong, surrogate */
        *cp = ((c & 0x0F) << 12) | ((Py_UCS4)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c < 0xF5) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)) return 0; /* overlong, past U+10FFFF */
        *cp = ((c & 0x07) << 18) | ((Py_UCS4)(s[1] & 0x3F) << 12) | ((Py_UCS4)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* How many of the bytes from s[i] on (up to n) are ASCII, at least up to the first
 * non-ASCII one in each block of 16 checked. */
static inline Py_ssize_t
ascii_run(const unsigned char *s, Py_ssize_t i, Py_ssize_t n)
{
    Py_ssize_t start = i;
#if defined(__SSE2__)
    while (i + 16 <= n) {
        int mask = _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
        if (mask) {
            return i - start + __builtin_ctz((unsigned int)mask);
        }
        i += 16;
    }
#endif
    while (i < n && s[i] < 0x80) {
        i++;
    }
    return i - start;
}

/* Large strings and bytes are written straight after they are allocated, and that
 * memory is usually fresh from the kernel: every page of it would fault on its first
 * write (~1.5-2.5 us each, most of the cost of building a large value).  Asking for
 * the whole pages of a large allocation in one madvise(MADV_POPULATE_WRITE) call
 * maps them ~30% faster than faulting them one by one.  It changes no byte (it only
 * maps the pages as a write would); any failure just leaves the pages to fault as
 * before, and a kernel without it (EINVAL), or a sandbox refusing it (ENOSYS, EPERM),
 * is not asked again. */
#define PREFAULT_MIN_BYTES (16 * 1024)
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
static int prefault_ok = 1;
static uintptr_t page_mask = 4095;

static void
prefault(void *p, size_t n)
{
    if (n < PREFAULT_MIN_BYTES || !prefault_ok) {
        return;
    }
    uintptr_t a = ((uintptr_t)p + page_mask) & ~page_mask, b = ((uintptr_t)p + n) & ~page_mask;
    if (b > a) {
        int saved = errno;
        if (madvise((void *)a, b - a, MADV_POPULATE_WRITE) != 0 &&
            (errno == EINVAL || errno == ENOSYS || errno == EPERM)) {
            prefault_ok = 0;
        }
        errno = saved;
    }
}
#else
#define prefault(p, n) ((void)0)
#endif

/* A new str of `chars` characters up to `maxchar`, its pages mapped when large. */
static PyObject *
new_str(Py_ssize_t chars, Py_UCS4 maxchar)
{
    PyObject *u = PyUnicode_New(chars, maxchar);
    if (u != NULL) {
        prefault(PyUnicode_DATA(u), (size_t)chars * PyUnicode_KIND(u));
    }
    return u;
}

/* bytes(s[:n]), its pages mapped first when large. */
static PyObject *
new_bytes(const unsigned char *s, Py_ssize_t n)
{
    if ((size_t)n < PREFAULT_MIN_BYTES) {
        return PyBytes_FromStringAndSize((const char *)s, n);
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b != NULL) {
        prefault(PyBytes_AS_STRING(b), (size_t)n);
        memcpy(PyBytes_AS_STRING(b), s, (size_t)n);
    }
    return b;
}

static PyObject *
decode_utf8(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0, chars = 0;
    Py_UCS4 maxchar = 0, cp = 0;
    while (i < n) {
        Py_ssize_t run = ascii_run(s, i, n);
        i += run;
        chars += run;
        if (i >= n) {
            break;
        }
        int len = utf8_sequence(s + i, n - i, &cp);
        if (len == 0) {
            return GIVE_UP;
        }
        if (cp > maxchar) {
            maxchar = cp;
        }
        i += len;
        chars++;
    }
    if (maxchar < 0x80) { /* ASCII: one copy */
        if ((size_t)n < PREFAULT_MIN_BYTES) {
            return PyUnicode_FromStringAndSize((const char *)s, n);
        }
        PyObject *a = new_str(n, 0x7f);
        if (a != NULL) { /* the n bytes were just found ASCII, and no Python code ran since */
            memcpy(PyUnicode_1BYTE_DATA(a), s, (size_t)n);
        }
        return a;
    }
    PyObject *u = new_str(chars, maxchar);
    if (u == NULL) {
        return NULL;
    }
    int kind = PyUnicode_KIND(u);
    void *out = PyUnicode_DATA(u);
    Py_ssize_t o = 0;
    i = 0;
    while (i < n) {
        Py_ssize_t run = ascii_run(s, i, n);
        if (run > chars - o) { /* only if the bytes changed under us: never write past the end */
            Py_DECREF(u);
            return GIVE_UP;
        }
        if (kind == PyUnicode_1BYTE_KIND) {
            memcpy((Py_UCS1 *)out + o, s + i, (size_t)run);
        }
        else if (kind == PyUnicode_2BYTE_KIND) {
            Py_UCS2 *w = (Py_UCS2 *)out + o;
            Py_ssize_t j = 0;
#if defined(__SSE2__)
            const __m128i zero = _mm_setzero_si128();
            for (; j + 16 <= run; j += 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(s + i + j));
                _mm_storeu_si128((__m128i *)(w + j), _mm_unpacklo_epi8(v, zero));
                _mm_storeu_si128((__m128i *)(w + j + 8), _mm_unpackhi_epi8(v, zero));
            }
#endif
            for (; j < run; j++) {
                w[j] = s[i + j];
            }
        }
        else {
            Py_UCS4 *w = (Py_UCS4 *)out + o;
            Py_ssize_t j = 0;
#if defined(__SSE2__)
            const __m128i zero = _mm_setzero_si128();
            for (; j + 16 <= run; j += 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(s + i + j));
                __m128i lo = _mm_unpacklo_epi8(v, zero), hi = _mm_unpackhi_epi8(v, zero);
                _mm_storeu_si128((__m128i *)(w + j), _mm_unpacklo_epi16(lo, zero));
                _mm_storeu_si128((__m128i *)(w + j + 4), _mm_unpackhi_epi16(lo, zero));
                _mm_storeu_si128((__m128i *)(w + j + 8), _mm_unpacklo_epi16(hi, zero));
                _mm_storeu_si128((__m128i *)(w + j + 12), _mm_unpackhi_epi16(hi, zero));
            }
#endif
            for (; j < run; j++) {
                w[j] = s[i + j];
            }
        }
        i += run;
        o += run;
        if (i >= n) {
            break;
        }
        int len = utf8_sequence(s + i, n - i, &cp); /* valid: checked in the first pass */
        if (len == 0 || o >= chars || cp > maxchar) {
            Py_DECREF(u);
            return GIVE_UP;
        }
        PyUnicode_WRITE(kind, out, o, cp);
        i += len;
        o++;
    }
    if (o != chars) {
        Py_DECREF(u);
        return GIVE_UP;
    }
    return u;
}

static PyObject *
decode_text(Decoder *d, uint64_t n)
{
    if (n > (uint64_t)(d->end - d->p)) {
        return GIVE_UP;
    }
    const unsigned char *s = d->p;
    d->p += n;
    if (n <= STR_CACHE_MAX_LEN) {
        uint32_t h = 2166136261u; /* FNV-1a */
        int ascii = 1;
        for (uint64_t i = 0; i < n; i++) {
            ascii &= s[i] < 128;
            h = (h ^ s[i]) * 16777619u;
        }
        if (ascii) {
            PyObject **slot = &str_cache[(h ^ (h >> 16)) & (STR_CACHE_SIZE - 1)];
            PyObject *hit = *slot;
            if (hit != NULL && PyUnicode_GET_LENGTH(hit) == (Py_ssize_t)n &&
                memcmp(PyUnicode_1BYTE_DATA(hit), s, n) == 0) {
                Py_INCREF(hit);
                return hit;
            }
            PyObject *str = PyUnicode_FromStringAndSize((const char *)s, (Py_ssize_t)n);
            if (str == NULL) {
                return NULL;
            }
            /* Not hashed here: most strings met once are values, never hashed; a key is
               hashed by the first dict it goes into, and its hash stays with it. */
            Py_INCREF(str);
            Py_XSETREF(*slot, str);
            return str;
        }
    }
    return decode_utf8(s, (Py_ssize_t)n);
}

static PyObject *
decode_array(Decoder *d, uint64_t n, int depth)
{
    if (n > (uint64_t)(d->end - d->p)) { /* every item takes at least one byte */
        return GIVE_UP;
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        PyObject *item = decode_item(d, depth + 1);
        if (item == NULL || item == GIVE_UP) {
            Py_DECREF(list);
            return item;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    if (record_done(d, list, depth) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

static PyObject *
decode_map(Decoder *d, uint64_t n, int depth)
{
    if (n > (uint64_t)(d->end - d->p) / 2) { /* every pair takes at least two bytes */
        return GIVE_UP;
    }
#if PY_VERSION_HEX < 0x030D0000
    /* Sized for its keys up front, so it is not resized while filled; only for small
       maps, so a hostile count cannot make it allocate more than its keys would. */
    PyObject *dict = (n > 5 && n <= 256) ? _PyDict_NewPresized((Py_ssize_t)n) : PyDict_New();
#else
    PyObject *dict = PyDict_New();
#endif
    if (dict == NULL) {
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (d->p >= d->end || (*d->p >> 5) != 3) { /* keys must be text */
            Py_DECREF(dict);
            return GIVE_UP;
        }
        PyObject *key = decode_item(d, depth + 1);
        if (key == NULL || key == GIVE_UP) {
            Py_DECREF(dict);
            return key;
        }
        PyObject *value = decode_item(d, depth + 1);
        if (value == NULL || value == GIVE_UP) {
            Py_DECREF(key);
            Py_DECREF(dict);
            return value;
        }
        int r = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (r < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    if (record_done(d, dict, depth) < 0) {
        Py_DECREF(dict);
        return NULL;
    }
    return dict;
}

static PyObject *
decode_item(Decoder *d, int depth)
{
    if (depth > d->max_depth || d->p >= d->end) {
        return GIVE_UP;
    }
    unsigned int initial = *d->p++;
    unsigned int major = initial >> 5, ai = initial & 31;
    uint64_t arg;
    if (major == 7) {
        const unsigned char *f = d->p;
        switch (ai) {
        case 20:
            Py_RETURN_FALSE;
        case 21:
            Py_RETURN_TRUE;
        case 22:
            Py_RETURN_NONE;
        case 25: {
            if (d->end - d->p < 2) return GIVE_UP;
            unsigned int h = ((unsigned int)f[0] << 8) | f[1];
            if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) && (h & 0x7fff) != 0x7e00) {
                return GIVE_UP; /* a NaN with a payload: cbor2 keeps it, PyFloat_Unpack2 may not */
            }
            d->p += 2;
            return PyFloat_FromDouble(PyFloat_Unpack2((const char *)f, 0));
        }
        case 26:
            if (d->end - d->p < 4) return GIVE_UP;
            d->p += 4;
            return PyFloat_FromDouble(PyFloat_Unpack4((const char *)f, 0));
        case 27:
            if (d->end - d->p < 8) return GIVE_UP;
            d->p += 8;
            return PyFloat_FromDouble(PyFloat_Unpack8((const char *)f, 0));
        default:
            return GIVE_UP;
        }
    }
    if (read_arg(d, ai, &arg) < 0) {
        return GIVE_UP;
    }
    switch (major) {
    case 0:
        return PyLong_FromUnsignedLongLong(arg);
    case 1:
        if (arg > (uint64_t)INT64_MAX) { /* -1 - arg is below int64: ~arg in Python ints */
            PyObject *n = PyLong_FromUnsignedLongLong(arg);
            if (n == NULL) {
                return NULL;
            }
            PyObject *out = PyNumber_Invert(n);
            Py_DECREF(n);
            return out;
        }
        return PyLong_FromLongLong(-1 - (long long)arg);
    case 2:
        if (arg > (uint64_t)(d->end - d->p)) {
            return GIVE_UP;
        }
        d->p += arg;
        return new_bytes(d->p - arg, (Py_ssize_t)arg);
    case 3:
        return decode_text(d, arg);
    case 4:
        return decode_array(d, arg, depth);
    case 5:
        return decode_map(d, arg, depth);
    default: /* 6: tags */
        if (arg == ENTRIES_TAG) {
            if (d->p >= d->end || *d->p != 0xf6) {
                return GIVE_UP;
            }
            d->p++;
            d->markers++;
            Py_INCREF(d->entries);
            return d->entries;
        }
        if (arg == 2 || arg == 3) { /* bignum: an integer beyond 64 bits, big-endian bytes */
            if (d->p >= d->end || (*d->p >> 5) != 2) {
                return GIVE_UP;
            }
            PyObject *raw = decode_item(d, depth + 1);
            if (raw == NULL || raw == GIVE_UP) {
                return raw;
            }
            PyObject *n = PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "Os", raw, "big");
            Py_DECREF(raw);
            if (n == NULL || arg == 2) {
                return n;
            }
            PyObject *out = PyNumber_Invert(n); /* tag 3 holds -1 - n */
            Py_DECREF(n);
            return out;
        }
        if (arg == REF_TAG) {
            d->in_ref++;
            PyObject *content = decode_item(d, depth + 1);
            d->in_ref--;
            if (content == NULL || content == GIVE_UP) {
                return content;
            }
            PyObject *out = PyObject_CallOneArg(d->ref_hook, content);
            Py_DECREF(content);
            return out;
        }
        return GIVE_UP;
    }
}

static PyObject *
decode(PyObject *module, PyObject *args)
{
    Py_buffer buf;
    PyObject *ref_hook, *entries, *record = Py_None;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*OOi|O:decode", &buf, &ref_hook, &entries, &max_depth, &record)) {
        return NULL;
    }
    Decoder d = {buf.buf, (const unsigned char *)buf.buf + buf.len, ref_hook, entries, 0, max_depth,
                 NULL, NULL, NULL, NULL, 0};
    Py_ssize_t before[4] = {0, 0, 0, 0};
    if (record != Py_None) {
        if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 4) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_TypeError, "record must be a tuple of four lists");
            return NULL;
        }
        for (int i = 0; i < 4; i++) {
            PyObject *list = PyTuple_GET_ITEM(record, i);
            if (!PyList_CheckExact(list)) {
                PyBuffer_Release(&buf);
                PyErr_SetString(PyExc_TypeError, "record must be a tuple of four lists");
                return NULL;
            }
            before[i] = PyList_GET_SIZE(list);
        }
        d.containers = PyTuple_GET_ITEM(record, 0);
        d.lens = PyTuple_GET_ITEM(record, 1);
        d.keys = PyTuple_GET_ITEM(record, 2);
        d.values = PyTuple_GET_ITEM(record, 3);
    }
    PyObject *value = decode_item(&d, 0);
    PyBuffer_Release(&buf);
    if (value == NULL || value == GIVE_UP || d.p != d.end) {
        if (value != NULL && value != GIVE_UP) {
            Py_DECREF(value);
        }
        if (d.containers != NULL) { /* nothing half recorded is left behind */
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            for (int i = 0; i < 4; i++) {
                PyObject *list = PyTuple_GET_ITEM(record, i);
                if (PyList_SetSlice(list, before[i], PyList_GET_SIZE(list), NULL) < 0) {
                    PyErr_Clear();
                }
            }
            PyErr_Restore(type, exc, tb);
        }
        if (value == NULL) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *out = Py_BuildValue("(Nn)", value, d.markers);
    return out;
}

/* encode(value, ref_type, entries, refs) -> bytes or None
 *
 * The fast path of eventlog.codec.dumps: the very bytes cbor2.dumps writes for
 * exact dicts with str keys, lists, tuples, str, bytes, bool, None, floats (doubles;
 * NaN and infinities as cbor2 writes them, in half precision) and integers of up to
 * 64 bits; an instance of `ref_type` (eventlog's Ref) as REF_TAG over [kind, length,
 * hashes] (and prefix when not empty; prefix and form when the form is not 0),
 * appended to the list `refs`; the object
 * `entries` as ENTRIES_TAG over null.  Gives up (None) on anything else: bigger
 * integers, other types, str that is not valid Unicode, nesting over 1000; the caller
 * then encodes with cbor2, which raises the errors.
 */
typedef struct {
    char *buf;
    size_t len, cap;
    PyObject *ref_type, *entries, *refs;
} Encoder;

static int
reserve(Encoder *e, size_t n)
{
    if (e->cap - e->len >= n) {
        return 0;
    }
    size_t cap = e->cap * 2;
    if (cap < e->len + n) {
        cap = e->len + n;
    }
    char *buf = PyMem_Realloc(e->buf, cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->buf = buf;
    e->cap = cap;
    return 0;
}

static int
put_head(Encoder *e, unsigned int major, uint64_t arg)
{
    if (reserve(e, 9) < 0) {
        return -1;
    }
    unsigned char *p = (unsigned char *)e->buf + e->len;
    major <<= 5;
    if (arg < 24) {
        p[0] = (unsigned char)(major | arg);
        e->len += 1;
        return 0;
    }
    int n = arg <= 0xff ? 1 : arg <= 0xffff ? 2 : arg <= 0xffffffffu ? 4 : 8;
    p[0] = (unsigned char)(major | (n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27));
    for (int i = n; i > 0; i--) {
        p[i] = (unsigned char)(arg & 0xff);
        arg >>= 8;
    }
    e->len += 1 + (size_t)n;
    return 0;
}

static int
put_bytes(Encoder *e, unsigned int major, const char *data, size_t n)
{
    if (put_head(e, major, n) < 0 || reserve(e, n) < 0) {
        return -1;
    }
    memcpy(e->buf + e->len, data, n);
    e->len += n;
    return 0;
}

/* 0: done; -1: error set; 1: give up */
static int encode_item(Encoder *e, PyObject *v, int depth);

static int
encode_str(Encoder *e, PyObject *v)
{
    if (PyUnicode_IS_ASCII(v)) {
        return put_bytes(e, 3, (const char *)PyUnicode_1BYTE_DATA(v), (size_t)PyUnicode_GET_LENGTH(v));
    }
    PyObject *utf8 = PyUnicode_AsUTF8String(v);
    if (utf8 == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    int r = put_bytes(e, 3, PyBytes_AS_STRING(utf8), (size_t)PyBytes_GET_SIZE(utf8));
    Py_DECREF(utf8);
    return r;
}

static int
encode_ref(Encoder *e, PyObject *v, int depth)
{
    static const char *names[] = {"kind", "length", "hashes", "prefix", "form"};
    PyObject *fields[5] = {NULL, NULL, NULL, NULL, NULL};
    int r = 0;
    for (int i = 0; i < 5 && r == 0; i++) {
        fields[i] = PyObject_GetAttrString(v, names[i]);
        if (fields[i] == NULL) {
            r = -1;
        }
    }
    if (r == 0 && !PyUnicode_Check(fields[3])) {
        r = 1;
    }
    int has_form = 0;
    if (r == 0) {
        has_form = PyObject_IsTrue(fields[4]);
        if (has_form < 0) {
            r = -1;
        }
    }
    if (r == 0) {
        /* As codec._general_dumps: the form (and then the prefix, even empty) only
         * when the form is not the canonical 0; the prefix only when not empty. */
        Py_ssize_t n = has_form ? 5 : PyUnicode_GET_LENGTH(fields[3]) ? 4 : 3;
        r = put_head(e, 6, 59501);
        if (r == 0) {
            r = put_head(e, 4, (uint64_t)n);
        }
        for (Py_ssize_t i = 0; i < n && r == 0; i++) {
            r = encode_item(e, fields[i], depth + 1);
        }
        if (r == 0) {
            r = PyList_Append(e->refs, v);
        }
    }
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(fields[i]);
    }
    return r;
}

static int
encode_item(Encoder *e, PyObject *v, int depth)
{
    if (depth > 1000) {
        return 1;
    }
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) {
        return encode_str(e, v);
    }
    if (t == &PyDict_Type) {
        if (put_head(e, 5, (uint64_t)PyDict_GET_SIZE(v)) < 0) {
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!PyUnicode_CheckExact(k)) {
                return 1;
            }
            /* Only C runs here, so the dict cannot change while it is walked. */
            int r = encode_str(e, k);
            if (r == 0) {
                r = encode_item(e, x, depth + 1);
            }
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t n = Py_SIZE(v);
        PyObject **items = t == &PyList_Type ? ((PyListObject *)v)->ob_item : ((PyTupleObject *)v)->ob_item;
        if (put_head(e, 4, (uint64_t)n) < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = encode_item(e, items[i], depth + 1);
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }
    if (v == Py_None) {
        return put_head(e, 7, 22);
    }
    if (v == Py_True || v == Py_False) {
        return put_head(e, 7, v == Py_True ? 21 : 20);
    }
    if (t == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            return 1;
        }
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        return x >= 0 ? put_head(e, 0, (uint64_t)x) : put_head(e, 1, (uint64_t)(-1 - x));
    }
    if (t == &PyFloat_Type) {
        double x = PyFloat_AS_DOUBLE(v);
        if (reserve(e, 9) < 0) {
            return -1;
        }
        unsigned char *p = (unsigned char *)e->buf + e->len;
        if (isnan(x) || isinf(x)) { /* as cbor2: half precision */
            p[0] = 0xf9;
            p[1] = isnan(x) ? 0x7e : x > 0 ? 0x7c : 0xfc;
            p[2] = 0;
            e->len += 3;
            return 0;
        }
        p[0] = 0xfb;
        if (PyFloat_Pack8(x, (char *)p + 1, 0) < 0) {
            return -1;
        }
        e->len += 9;
        return 0;
    }
    if (t == &PyBytes_Type) {
        return put_bytes(e, 2, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    }
    if (v == e->entries) {
        if (put_head(e, 6, 59502) < 0) {
            return -1;
        }
        return put_head(e, 7, 22);
    }
    if (t == (PyTypeObject *)e->ref_type) {
        return encode_ref(e, v, depth);
    }
    return 1;
}

static PyObject *
encode(PyObject *module, PyObject *args)
{
    PyObject *value;
    Encoder e = {NULL, 0, 0, NULL, NULL, NULL};
    if (!PyArg_ParseTuple(args, "OOOO!:encode", &value, &e.ref_type, &e.entries, &PyList_Type, &e.refs)) {
        return NULL;
    }
    Py_ssize_t refs_before = PyList_GET_SIZE(e.refs);
    e.cap = 4096;
    e.buf = PyMem_Malloc(e.cap);
    if (e.buf == NULL) {
        return PyErr_NoMemory();
    }
    int r = encode_item(&e, value, 0);
    PyObject *out = NULL;
    if (r == 0) {
        out = PyBytes_FromStringAndSize(e.buf, (Py_ssize_t)e.len);
    }
    else {
        /* Given up (the general encoder starts again) or failed: forget the refs met. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PyList_SetSlice(e.refs, refs_before, PyList_GET_SIZE(e.refs), NULL) == 0 && r == 1) {
            out = Py_None;
            Py_INCREF(out);
        }
        if (type != NULL) {
            PyErr_Restore(type, value, tb);
        }
    }
    PyMem_Free(e.buf);
    return out;
}

static PyMethodDef methods[] = {
    {"copy", copy, METH_O, "copy(value): new dicts and lists, shared leaves."},
    {"encode", encode, METH_VARARGS,
     "encode(value, ref_type, entries, refs) -> the bytes cbor2.dumps writes, or None to leave it to cbor2."},
    {"decode", decode, METH_VARARGS,
     "decode(data, ref_hook, entries, max_depth[, record]) -> (value, markers), or None to leave it to the "
     "general decoder."},
    {"scan", scan, METH_VARARGS,
     "scan(value, threshold, max_depth) -> True, False or None: storable with a possibly large leaf, "
     "storable without, or not storable."},
    {"record", record, METH_VARARGS,
     "record(entries, containers, lens, keys, values) -> bool: append what unchanged() checks; False "
     "for a dict with a key that is not an exact str."},
    {"take", take, METH_VARARGS,
     "take(containers, lens, keys, values, items) -> a copy of items if unchanged(...) holds, else None."},
    {"unchanged", unchanged, METH_VARARGS,
     "unchanged(containers, lens, keys, values) -> bool: the containers still hold exactly the recorded "
     "keys and values, by identity."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "eventlog._speedups", "Optional C speedups for eventlog.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && (page & (page - 1)) == 0) {
        page_mask = (uintptr_t)page - 1;
    }
    else {
        prefault_ok = 0;
    }
#endif
    return PyModule_Create(&module);
}
