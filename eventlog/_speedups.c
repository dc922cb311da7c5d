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

static PyObject *
unchanged(PyObject *module, PyObject *args)
{
    PyObject *containers, *lens, *keys, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!O!:unchanged", &PyList_Type, &containers, &PyList_Type, &lens,
                          &PyList_Type, &keys, &PyList_Type, &values)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(containers);
    Py_ssize_t nk = PyList_GET_SIZE(keys), nv = PyList_GET_SIZE(values);
    Py_ssize_t ki = 0, vi = 0;
    if (PyList_GET_SIZE(lens) != n) {
        Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyList_GET_ITEM(containers, i);
        Py_ssize_t len = PyLong_AsSsize_t(PyList_GET_ITEM(lens, i));
        if (len == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (PyDict_CheckExact(c)) {
            if (PyDict_GET_SIZE(c) != len || len > nk - ki || len > nv - vi) {
                Py_RETURN_FALSE;
            }
            Py_ssize_t pos = 0, seen = 0;
            PyObject *k, *v;
            while (PyDict_Next(c, &pos, &k, &v)) {
                if (seen == len || k != PyList_GET_ITEM(keys, ki) || v != PyList_GET_ITEM(values, vi)) {
                    Py_RETURN_FALSE;
                }
                seen++;
                ki++;
                vi++;
            }
            if (seen != len) {
                Py_RETURN_FALSE;
            }
        }
        else if (PyList_CheckExact(c)) {
            if (PyList_GET_SIZE(c) != len || len > nv - vi) {
                Py_RETURN_FALSE;
            }
            PyObject **items = ((PyListObject *)c)->ob_item;
            for (Py_ssize_t j = 0; j < len; j++, vi++) {
                if (items[j] != PyList_GET_ITEM(values, vi)) {
                    Py_RETURN_FALSE;
                }
            }
        }
        else {
            Py_RETURN_FALSE;
        }
    }
    if (ki != nk || vi != nv) {
        Py_RETURN_FALSE;
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
 */
static PyObject *
copy_value(PyObject *v, int depth)
{
    if (depth > 10000) {
        PyErr_SetString(PyExc_RecursionError, "value nested too deeply to copy");
        return NULL;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *out = PyDict_New();
        if (out == NULL) {
            return NULL;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            PyObject *y = copy_value(x, depth + 1);
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

static PyMethodDef methods[] = {
    {"copy", copy, METH_O, "copy(value): new dicts and lists, shared leaves."},
    {"scan", scan, METH_VARARGS,
     "scan(value, threshold, max_depth) -> True, False or None: storable with a possibly large leaf, "
     "storable without, or not storable."},
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
    return PyModule_Create(&module);
}
