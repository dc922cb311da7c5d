/* Optional C speedups for eventlog: walks over Python objects, never a parser of bytes.
 *
 * Each function here has a pure-Python twin that gives the same answers and is its
 * test oracle (tests/contract/test_speedups.py); eventlog uses the twin when this module is
 * not built, or is switched off (EVENTLOG_NO_SPEEDUPS=1):
 *
 *   unchanged, record   eventlog.mirror.Mirror (the proof that a caller's entries did
 *                       not change since the last save)
 *   scan                eventlog.values.validate and decoded_ok
 *   count               eventlog.values.count (the bound on decoded segments)
 *   copy                eventlog.values.copy
 *
 * Only the public C API of CPython 3.11 to 3.13 is used (no _Py* function, no
 * internal header), and nothing in the interpreter's global state is changed.  The
 * walkers rely on the GIL: they are not built for a free-threaded interpreter
 * (setup.py skips them there, and the #error below says why).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef Py_GIL_DISABLED
#error "eventlog._speedups walks containers under the GIL; a free-threaded build uses the pure-Python twins"
#endif

/* unchanged(containers, lens, keys, values) -> bool
 *
 * The identity check of eventlog.mirror.Mirror: True when every recorded container
 * (a dict or a list) still has its recorded length and holds, in order, the very
 * same key objects (dicts) and value objects as recorded in the flat lists `keys`
 * and `values`.  Only pointers are compared and nothing is allocated: no Python code
 * runs (so no other thread either), nothing can change the containers while they are
 * walked, and borrowed references are safe.
 *
 * 1 when unchanged, 0 when not, -1 with an exception set.
 */
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
            for (Py_ssize_t j = 0; j < len; j++, vi++) {
                if (PyList_GET_ITEM(c, j) != PyList_GET_ITEM(values, vi)) {
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

/* record(entries, containers, lens, keys, values) -> bool
 *
 * What eventlog.mirror.Mirror records of `entries` (a list), for unchanged() to check
 * later: every dict and list inside the entries, depth first, appended to
 * `containers` with its length to `lens`, and the keys and values each holds, in the
 * order unchanged() walks them, to `keys` and `values`.
 * False (the lists then hold part of a record, to be dropped) when a dict has a key
 * that is not an exact str.  No Python code runs during the walk: it allocates only
 * list storage and ints, never an object the cyclic collector tracks, so no
 * collection (and no finalizer) can start in it.
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
 * Recursion is bounded by max_depth.  Nothing is allocated: no Python code runs.
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

/* count(value, budget, max_depth) -> int
 *
 * The number of values in `value` (each dict, list and leaf; keys are not counted),
 * or -1 as soon as it is more than `budget`, when dicts and lists nest max_depth
 * levels or more, or when one dict or list is met twice: held in two places (which
 * CBOR's shared values can make) or inside itself.  So a decoded value that is not a
 * plain tree is refused after at most budget + 1 steps, however it is shared.  The
 * containers met are remembered in a table of pointers of its own (allocated with
 * PyMem, freed before returning); no Python code runs.
 */
typedef struct {
    PyObject **slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t used;
} seen_set;

/* 1 when added, 0 when already there, -1 (MemoryError set) when out of memory. */
static int
seen_add(seen_set *s, PyObject *p)
{
    if ((s->used + 1) * 2 > s->mask + 1) {
        size_t cap = (s->mask + 1) * 2;
        PyObject **slots = PyMem_Calloc(cap, sizeof(PyObject *));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i <= s->mask; i++) {
            PyObject *q = s->slots[i];
            if (q != NULL) {
                size_t j = ((size_t)(uintptr_t)q >> 4) & (cap - 1);
                while (slots[j] != NULL) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = q;
            }
        }
        PyMem_Free(s->slots);
        s->slots = slots;
        s->mask = cap - 1;
    }
    size_t j = ((size_t)(uintptr_t)p >> 4) & s->mask;
    while (s->slots[j] != NULL) {
        if (s->slots[j] == p) {
            return 0;
        }
        j = (j + 1) & s->mask;
    }
    s->slots[j] = p;
    s->used++;
    return 1;
}

/* 0 when counted, -1 when refused (see above), -2 with an exception set. */
static int
count_value(PyObject *v, Py_ssize_t *left, int depth, int max_depth, seen_set *seen)
{
    if (--*left < 0) {
        return -1;
    }
    PyTypeObject *t = Py_TYPE(v);
    if (t != &PyDict_Type && t != &PyList_Type) {
        return 0;
    }
    if (depth >= max_depth) {
        return -1;
    }
    int added = seen_add(seen, v);
    if (added <= 0) {
        return added == 0 ? -1 : -2;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            int r = count_value(x, left, depth + 1, max_depth, seen);
            if (r < 0) {
                return r;
            }
        }
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        int r = count_value(PyList_GET_ITEM(v, i), left, depth + 1, max_depth, seen);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static PyObject *
count(PyObject *module, PyObject *args)
{
    PyObject *value;
    Py_ssize_t budget;
    int max_depth;
    if (!PyArg_ParseTuple(args, "Oni:count", &value, &budget, &max_depth)) {
        return NULL;
    }
    if (budget < 0) {
        return PyLong_FromLong(-1);
    }
    seen_set seen = {PyMem_Calloc(64, sizeof(PyObject *)), 63, 0};
    if (seen.slots == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t left = budget;
    int r = count_value(value, &left, 0, max_depth, &seen);
    PyMem_Free(seen.slots);
    if (r == -2) {
        return NULL;
    }
    return PyLong_FromSsize_t(r < 0 ? -1 : budget - left);
}

/* copy(value) -> a copy whose dicts and lists are new and whose leaves are shared
 *
 * The fast path of eventlog.values.copy, for values already validated or decoded
 * (dicts with str keys, lists, and immutable leaves).  Only exact dicts and lists
 * are copied; anything else is shared, as in the Python version.  A dict is cloned
 * whole (PyDict_Copy copies its table in one go, keeping the order), then each value
 * that is itself a container is replaced by its copy.
 *
 * The new containers are objects the cyclic collector tracks, and on Python 3.11
 * allocating one may start a collection whose finalizers are Python code (which may
 * change the value being copied, or let another thread run).  So every object walked
 * is held by a reference of its own while the walk is inside it, and a list is read
 * only within its current length: a change made meanwhile can make the copy a mix of
 * before and after (as it would the Python version), never a crash.
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
        /* The keys and values of `out` (the copy, which nothing else can reach) are
           walked, not those of `v`: the walk holds its own references to them. */
        while (PyDict_Next(out, &pos, &k, &x)) {
            if (!PyDict_CheckExact(x) && !PyList_CheckExact(x)) {
                continue;
            }
            Py_INCREF(k);
            Py_INCREF(x);
            PyObject *y = copy_value(x, depth + 1);
            /* Replacing the value of an existing key never resizes `out`, so the walk
               over it goes on where it was. */
            int r = y == NULL ? -1 : PyDict_SetItem(out, k, y);
            Py_XDECREF(y);
            Py_DECREF(x);
            Py_DECREF(k);
            if (r < 0) {
                Py_DECREF(out);
                return NULL;
            }
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
            PyObject *x = i < PyList_GET_SIZE(v) ? PyList_GET_ITEM(v, i) : Py_None; /* shrunk meanwhile */
            Py_INCREF(x);
            PyObject *y = copy_value(x, depth + 1);
            Py_DECREF(x);
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

/* copy_models(privates, kinds, leaves, new_object) -> (copies, holders) or None
 *
 * The fast path of eventlog.langgraph_objects.copies: a copy of each item of
 * `privates` (a list), made as the pure-Python twin makes it, and what those copies
 * hold (each dict or list copied, each model's new __dict__ and pydantic extra).
 * An item whose type `kinds` (a dict) maps to 1 is a pydantic 2 model holding exactly
 * pydantic's four slots: a new instance (`new_object(type)`, object.__new__), its
 * __dict__ a copy (copy_value: new dicts and lists, shared leaves), its extra None,
 * a new {} or a copy, its fields set a new set, its private None or a new {}: set
 * in that order with object.__setattr__.  An item of a type in `leaves` (a set) is
 * shared; an exact dict or list is copied.  None (nothing else done) as soon as an
 * item is anything else or does not hold what it should (a __dict__ or extra that
 * is not an exact dict): the twin then copies them all.  Every item walked is held
 * by a reference of its own, and the list read within its current length, as in
 * copy() (allocating may start a collection whose finalizers run Python code).
 */
static PyObject *s_dict, *s_extra, *s_fields_set, *s_private;

/* 1 when `p` (a model of kind 1) was copied into `out` (its holders appended to
 * `holders`), 0 when it does not hold what it should, -1 with an exception set. */
static int
copy_model(PyObject *p, PyObject *new_object, PyObject *out, PyObject *holders)
{
    int result = -1;
    PyObject *new = NULL, *d = NULL, *fields = NULL, *extra = NULL, *extra_copy = NULL;
    PyObject *set = NULL, *fields_set = NULL, *private = NULL, *private_copy = NULL;
    d = PyObject_GetAttr(p, s_dict);
    if (d == NULL) {
        goto done;
    }
    extra = PyObject_GetAttr(p, s_extra);
    if (extra == NULL) {
        goto done;
    }
    if (!PyDict_CheckExact(d) || (extra != Py_None && !PyDict_CheckExact(extra))) {
        result = 0;
        goto done;
    }
    new = PyObject_CallOneArg(new_object, (PyObject *)Py_TYPE(p));
    if (new == NULL || (fields = copy_value(d, 0)) == NULL || PyObject_GenericSetAttr(new, s_dict, fields) < 0 ||
        PyList_Append(holders, fields) < 0) {
        goto done;
    }
    if (extra == Py_None) {
        Py_INCREF(Py_None);
        extra_copy = Py_None;
    }
    else {
        extra_copy = PyDict_GET_SIZE(extra) ? copy_value(extra, 0) : PyDict_New();
        if (extra_copy == NULL || PyList_Append(holders, extra_copy) < 0) {
            goto done;
        }
    }
    if (PyObject_GenericSetAttr(new, s_extra, extra_copy) < 0) {
        goto done;
    }
    set = PyObject_GetAttr(p, s_fields_set);
    if (set == NULL || (fields_set = PySet_New(set)) == NULL || PyObject_GenericSetAttr(new, s_fields_set, fields_set) < 0) {
        goto done;
    }
    private = PyObject_GetAttr(p, s_private);
    if (private == NULL) {
        goto done;
    }
    if (private == Py_None) {
        Py_INCREF(Py_None);
        private_copy = Py_None;
    }
    else if ((private_copy = PyDict_New()) == NULL) {
        goto done;
    }
    if (PyObject_GenericSetAttr(new, s_private, private_copy) < 0 || PyList_Append(out, new) < 0) {
        goto done;
    }
    result = 1;
done:
    Py_XDECREF(new);
    Py_XDECREF(d);
    Py_XDECREF(fields);
    Py_XDECREF(extra);
    Py_XDECREF(extra_copy);
    Py_XDECREF(set);
    Py_XDECREF(fields_set);
    Py_XDECREF(private);
    Py_XDECREF(private_copy);
    return result;
}

static PyObject *
copy_models(PyObject *module, PyObject *args)
{
    PyObject *privates, *kinds, *leaves, *new_object;
    if (!PyArg_ParseTuple(args, "O!O!O!O:copy_models", &PyList_Type, &privates, &PyDict_Type, &kinds, &PyFrozenSet_Type,
                          &leaves, &new_object)) {
        return NULL;
    }
    PyObject *out = PyList_New(0), *holders = PyList_New(0);
    if (out == NULL || holders == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(privates); i++) {
        PyObject *p = PyList_GET_ITEM(privates, i);
        Py_INCREF(p);
        PyObject *t = (PyObject *)Py_TYPE(p);
        int r;
        PyObject *kind = PyDict_GetItemWithError(kinds, t); /* borrowed */
        if (kind == NULL && PyErr_Occurred()) {
            r = -1;
        }
        else if (kind != NULL && PyLong_CheckExact(kind) && PyLong_AsLong(kind) == 1) {
            r = copy_model(p, new_object, out, holders);
        }
        else if (PyDict_CheckExact(p) || PyList_CheckExact(p)) {
            PyObject *c = copy_value(p, 0);
            r = c == NULL || PyList_Append(holders, c) < 0 || PyList_Append(out, c) < 0 ? -1 : 1;
            Py_XDECREF(c);
        }
        else {
            r = PySet_Contains(leaves, t);
            if (r == 1 && PyList_Append(out, p) < 0) {
                r = -1;
            }
        }
        Py_DECREF(p);
        if (r < 0) {
            goto fail;
        }
        if (r == 0) {
            Py_DECREF(out);
            Py_DECREF(holders);
            Py_RETURN_NONE;
        }
    }
    PyObject *result = PyTuple_Pack(2, out, holders);
    Py_DECREF(out);
    Py_DECREF(holders);
    return result;
fail:
    Py_XDECREF(out);
    Py_XDECREF(holders);
    return NULL;
}

static PyMethodDef methods[] = {
    {"copy", copy, METH_O, "copy(value): new dicts and lists, shared leaves."},
    {"copy_models", copy_models, METH_VARARGS,
     "copy_models(privates, kinds, leaves, new_object) -> (copies, holders) or None: copies of pydantic 2 "
     "models (of kind 1), dicts, lists and leaves, as eventlog.langgraph_objects.copies makes them."},
    {"count", count, METH_VARARGS,
     "count(value, budget, max_depth) -> int: the values in value, or -1 when more than budget, nested "
     "max_depth deep, or not a tree (a dict or list met twice)."},
    {"scan", scan, METH_VARARGS,
     "scan(value, threshold, max_depth) -> True, False or None: storable with a possibly large leaf, "
     "storable without, or not storable."},
    {"record", record, METH_VARARGS,
     "record(entries, containers, lens, keys, values) -> bool: append what unchanged() checks; False "
     "for a dict with a key that is not an exact str."},
    {"unchanged", unchanged, METH_VARARGS,
     "unchanged(containers, lens, keys, values) -> bool: the containers still hold exactly the recorded "
     "keys and values, by identity."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "eventlog._speedups", "Optional C walkers for eventlog (pure-Python twins in eventlog).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_dict = PyUnicode_InternFromString("__dict__");
    s_extra = PyUnicode_InternFromString("__pydantic_extra__");
    s_fields_set = PyUnicode_InternFromString("__pydantic_fields_set__");
    s_private = PyUnicode_InternFromString("__pydantic_private__");
    if (s_dict == NULL || s_extra == NULL || s_fields_set == NULL || s_private == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
