/* adler32(data): the Adler-32 checksum of a bytes-like object (RFC 1950).
   compiled_for(): the Python version whose headers this extension was compiled against. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *adler32(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) {
        return NULL;
    }
    unsigned long a = 1, b = 0;
    const unsigned char *bytes = data.buf;
    for (Py_ssize_t i = 0; i < data.len; i++) {
        a = (a + bytes[i]) % 65521;
        b = (b + a) % 65521;
    }
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong((b << 16) | a);
}

static PyObject *compiled_for(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(PY_VERSION);
}

static PyMethodDef methods[] = {
    {"adler32", adler32, METH_VARARGS, "The Adler-32 checksum of a bytes-like object."},
    {"compiled_for", compiled_for, METH_NOARGS, "The Python version of the headers this was compiled against."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    return PyModule_Create(&module);
}
