/* The core's reading of element formats, for the package to build its
 * NumPy types from (python/shmlane/_dtype.py): the format walk and NumPy's
 * type strings as canonical formats. */
#include <errno.h>
#include <string.h>

#include "ext.h"

/* One field as a tuple: (depth, code, byte_order, shape, offset, itemsize, name). */
static int add_field(const shl_format_field *f, void *list) {
  PyObject *shape = PyTuple_New(f->ndim);
  if (!shape) return -ENOMEM;
  for (uint32_t i = 0; i < f->ndim; i++) {
    PyObject *dim = PyLong_FromUnsignedLongLong(f->shape[i]);
    if (!dim) {
      Py_DECREF(shape);
      return -ENOMEM;
    }
    PyTuple_SetItem(shape, i, dim); /* steals dim; cannot fail on a new tuple */
  }
  PyObject *item = Py_BuildValue("(Is#C NKK s#)", f->depth, f->code, (Py_ssize_t)strlen(f->code),
                                 f->byte_order, shape, (unsigned long long)f->offset,
                                 (unsigned long long)f->itemsize, f->name, (Py_ssize_t)f->name_len);
  int rc = item ? PyList_Append(list, item) : -1;
  Py_XDECREF(item);
  return rc < 0 ? -ENOMEM : 0; /* negative: stops the walk; the exception is set */
}

/* ValueError saying why the core refused `format` (len bytes). */
static PyObject *format_refused(PyObject *format, Py_ssize_t len, int64_t rc,
                                const shl_format_info *info) {
  PyObject *shown = len <= 60 ? (Py_INCREF(format), format) : PyUnicode_Substring(format, 0, 60);
  if (!shown) return NULL;
  const char *more = len <= 60 ? "" : "...";
  if (rc == -EOVERFLOW)
    PyErr_Format(PyExc_ValueError, "format '%U%s': a sub-array of more than %d dimensions", shown,
                 more, SHL_FORMAT_MAX_DIMS);
  else if (len > SHL_FORMAT_MAX)
    PyErr_Format(PyExc_ValueError, "format of %zd bytes, more than %d", len, SHL_FORMAT_MAX);
  else if (info->items > SHL_FORMAT_MAX_FIELDS)
    PyErr_Format(PyExc_ValueError, "format '%U%s': more than %d items", shown, more,
                 SHL_FORMAT_MAX_FIELDS);
  else
    PyErr_Format(PyExc_ValueError, "format '%U%s', at character %llu: %s", shown, more,
                 (unsigned long long)info->stopped_at, shl_strerror((int)rc));
  Py_DECREF(shown);
  return NULL;
}

/* format_walk(format) -> (itemsize, fields): every item as shl_format_walk
 * reports it, a struct's fields between its "T" and its "}". */
PyObject *mod_format_walk(PyObject *mod, PyObject *arg) {
  (void)mod;
  Py_ssize_t len;
  const char *format = PyUnicode_Check(arg) ? PyUnicode_AsUTF8AndSize(arg, &len) : NULL;
  if (!format) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "format must be a str");
    return NULL;
  }
  PyObject *fields = PyList_New(0);
  if (!fields) return NULL;
  shl_format_info info = SHL_FORMAT_INFO_INIT;
  /* A NUL inside is no format: the core would read only up to it. */
  int64_t rc = (size_t)len == strlen(format) ? shl_format_walk(format, add_field, fields, &info)
                                             : SHL_E_BAD_FORMAT;
  if (rc < 0) {
    Py_DECREF(fields);
    return PyErr_Occurred() ? NULL : format_refused(arg, len, rc, &info);
  }
  return Py_BuildValue("(LN)", (long long)rc, fields);
}

/* format_from_typestr(typestr) -> the canonical format of a NumPy type
 * string ("<f8" -> "<d"), or None for a type with no standard-size code. */
PyObject *mod_format_from_typestr(PyObject *mod, PyObject *arg) {
  (void)mod;
  const char *typestr = PyUnicode_Check(arg) ? utf8(arg) : NULL;
  if (!typestr) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "typestr must be a str");
    return NULL;
  }
  char format[64];
  int rc = shl_format_from_typestr(typestr, format, sizeof format);
  if (rc < 0) Py_RETURN_NONE;
  return PyUnicode_FromStringAndSize(format, rc);
}
