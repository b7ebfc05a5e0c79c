/* compiled_for(): the Python version whose headers this extension was compiled against. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *compiled_for(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(PY_VERSION);
}

static PyMethodDef methods[] = {
    {"compiled_for", compiled_for, METH_NOARGS, "The Python version of the headers this was compiled against."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    return PyModule_Create(&module);
}
