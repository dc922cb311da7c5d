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

static PyMethodDef methods[] = {
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
