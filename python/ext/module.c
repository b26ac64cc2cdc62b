/* The module shmlane._shmlane: its functions, types, exceptions, constants
 * and state. */
#include <errno.h>
#include <string.h>

#include "ext.h"

static PyObject *mod_unlink(PyObject *mod, PyObject *arg) {
  const char *name = utf8(arg);
  if (!name) return NULL;
  int rc = shl_unlink(name);
  if (rc < 0) return set_error(PyModule_GetState(mod), rc, name, AT_USE);
  Py_RETURN_NONE;
}

static int collect_name(const char *name, void *list) {
  PyObject *s = PyUnicode_FromString(name);
  int rc = s ? PyList_Append(list, s) : -1;
  Py_XDECREF(s);
  return rc < 0 ? -ENOMEM : 0; /* negative: stops the walk; the exception is set */
}

/* names() -> the names of every shmlane segment on this machine, unopened. */
static PyObject *mod_names(PyObject *mod, PyObject *unused) {
  (void)unused;
  PyObject *list = PyList_New(0);
  if (!list) return NULL;
  int rc = shl_list(collect_name, list);
  if (PyErr_Occurred()) {
    Py_DECREF(list);
    return NULL;
  }
  if (rc < 0) {
    Py_DECREF(list);
    return set_error(PyModule_GetState(mod), rc, "*", AT_USE);
  }
  return list;
}

static PyMethodDef mod_methods[] = {
    {"create", mod_create, METH_VARARGS, "create(name, format, shape, mode, flags) -> Handle"},
    {"open", mod_open, METH_VARARGS,
     "open(name, readonly, timeout, owner=0, owner_uid=0, wait_name=False) -> Handle"},
    {"writer_open", mod_writer_open, METH_VARARGS,
     "writer_open(name, format, shape, slots, max_readers, flags, mode, meta_format, "
     "period_ns=0) -> Writer"},
    {"writer_replace", mod_writer_replace, METH_VARARGS,
     "writer_replace(writer, format, shape, slots, max_readers, flags, mode, meta_format, "
     "period_ns=0) -> Writer: a new stream of this layout under the writer's name; the writer "
     "given is closed"},
    {"reader_open", mod_reader_open, METH_VARARGS,
     "reader_open(name, policy, timeout, max_pinned, owner, owner_uid) -> Reader"},
    {"unlink", mod_unlink, METH_O, "unlink(name): remove a segment's name."},
    {"names", mod_names, METH_NOARGS, "names() -> list of segment names."},
    {"format_walk", mod_format_walk, METH_O,
     "format_walk(format) -> (itemsize, [(depth, code, byte_order, shape, offset, itemsize, "
     "name)]): the format's items as the core reads them (shl_format_walk)."},
    {"format_from_typestr", mod_format_from_typestr, METH_O,
     "format_from_typestr(typestr) -> the canonical format of a NumPy type string, or None."},
    {NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------- module */

static int add_ref(PyObject *mod, const char *name, PyObject *obj) {
  Py_INCREF(obj);
  if (PyModule_AddObject(mod, name, obj) < 0) {
    Py_DECREF(obj);
    return -1;
  }
  return 0;
}

static PyTypeObject *add_type(PyObject *mod, PyType_Spec *spec) {
  PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(mod, spec, NULL);
  if (!type) return NULL;
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
  type->tp_new = NULL;
#endif
  if (add_ref(mod, strrchr(spec->name, '.') + 1, (PyObject *)type) < 0) {
    Py_DECREF(type);
    return NULL;
  }
  return type;
}

/* A new exception class shmlane.NAME, also added to the module. */
static PyObject *add_exception(PyObject *mod, const char *name, const char *doc, PyObject *base1,
                               PyObject *base2) {
  PyObject *bases = base2 ? PyTuple_Pack(2, base1, base2) : PyTuple_Pack(1, base1);
  if (!bases) return NULL;
  PyObject *exc = PyErr_NewExceptionWithDoc(name, doc, bases, NULL);
  Py_DECREF(bases);
  if (exc && add_ref(mod, strrchr(name, '.') + 1, exc) < 0) Py_CLEAR(exc);
  return exc;
}

static int mod_exec(PyObject *mod) {
  modstate *st = PyModule_GetState(mod);
  if (!(st->handle_type = add_type(mod, &handle_spec)) ||
      !(st->held_type = add_type(mod, &held_spec)) ||
      !(st->writer_type = add_type(mod, &writer_spec)) ||
      !(st->reader_type = add_type(mod, &reader_spec)) ||
      !(st->loan_type = add_type(mod, &loan_spec)) ||
      !(st->sample_type = add_type(mod, &sample_spec)))
    return -1;
  if (!(st->error = add_exception(mod, "shmlane.Error", "Base class of shmlane's own errors.",
                                  PyExc_Exception, NULL)) ||
      !(st->corrupt = add_exception(mod, "shmlane.CorruptSegment",
                                    "A segment's header failed validation.", st->error, NULL)) ||
      !(st->mismatch = add_exception(mod, "shmlane.LayoutMismatch",
                                     "The segment's layout differs from the one asked for.",
                                     st->error, PyExc_ValueError)) ||
      !(st->recovered =
            add_exception(mod, "shmlane.LockRecovered",
                          "The lock's previous holder died holding it.", PyExc_Warning, NULL)) ||
      !(st->writer_gone = add_exception(
            mod, "shmlane.WriterGone",
            "Every frame is received, and the stream's writer died or closed with no other "
            "taking over.",
            st->error, NULL)) ||
      !(st->layout_changed = add_exception(
            mod, "shmlane.LayoutChanged",
            "The stream was replaced under its name (by a writer with another layout, or "
            "removed and created again), and this reader does not follow it.",
            st->writer_gone, NULL)) ||
      !(st->busy = add_exception(
            mod, "shmlane.StreamBusy",
            "The stream has no room for this writer (a live writer holds it: errno EBUSY) or "
            "reader (its reader table is full: errno EUSERS).",
            st->error, PyExc_OSError)) ||
      !(st->setflags = PyUnicode_InternFromString("setflags")) ||
      !(st->array = PyUnicode_InternFromString("array")))
    return -1;
  if (PyModule_AddStringConstant(mod, "core_version", shl_version_string()) < 0 ||
      PyModule_AddIntConstant(mod, "NAME_MAX", SHL_NAME_MAX) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX", SHL_FORMAT_MAX) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX_FIELDS", SHL_FORMAT_MAX_FIELDS) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX_DEPTH", SHL_FORMAT_MAX_DEPTH) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX_DIMS", SHL_FORMAT_MAX_DIMS) < 0 ||
      PyModule_AddIntConstant(mod, "SPIN_MAX_NS", SHL_SPIN_MAX_NS) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_ARRAY", SHL_KIND_ARRAY) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STRUCT", SHL_KIND_STRUCT) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STREAM", SHL_KIND_STREAM) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_REPLACE", SHL_CREATE_REPLACE) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_UNLINK_ON_CLOSE", SHL_CREATE_UNLINK_ON_CLOSE) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_BLOCK", SHL_STREAM_BLOCK) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_REPLACE", SHL_STREAM_REPLACE) < 0 ||
      PyModule_AddIntConstant(mod, "READER_NO_FOLLOW", SHL_READER_NO_FOLLOW) < 0 ||
      PyModule_AddIntConstant(mod, "READER_KEEP_LAST", SHL_READER_KEEP_LAST) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_MAX_SLOTS", SHL_STREAM_MAX_SLOTS) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_MAX_READERS", SHL_STREAM_MAX_READERS) < 0 ||
      PyModule_AddIntConstant(mod, "RECV_LATEST", SHL_RECV_LATEST) < 0 ||
      PyModule_AddIntConstant(mod, "RECV_ALL", SHL_RECV_ALL) < 0 ||
      PyModule_AddIntConstant(mod, "SPIN_AUTO", (long)SHL_SPIN_AUTO) < 0)
    return -1;
  return 0;
}

/* Every object the module state holds, for traverse and clear. */
// clang-format off
#define STATE_OBJECTS(X)                                                                   \
  X(handle_type) X(held_type) X(writer_type) X(reader_type) X(loan_type) X(sample_type)    \
  X(error) X(corrupt) X(mismatch) X(recovered) X(writer_gone) X(layout_changed) X(busy)      \
  X(setflags) X(array)
// clang-format on

static int mod_traverse(PyObject *mod, visitproc visit, void *arg) {
  modstate *st = PyModule_GetState(mod);
#define VISIT(field) Py_VISIT(st->field);
  STATE_OBJECTS(VISIT)
#undef VISIT
  return 0;
}

static int mod_clear(PyObject *mod) {
  modstate *st = PyModule_GetState(mod);
#define CLEAR(field) Py_CLEAR(st->field);
  STATE_OBJECTS(CLEAR)
#undef CLEAR
  return 0;
}

static void mod_free(void *mod) { mod_clear(mod); }

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

static struct PyModuleDef mod_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmlane._shmlane",
    .m_doc = "The shmlane C core. Use the `shmlane` package, not this module.",
    .m_size = sizeof(modstate),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__shmlane(void); /* no header declares it */
PyMODINIT_FUNC PyInit__shmlane(void) { return PyModuleDef_Init(&mod_def); }

