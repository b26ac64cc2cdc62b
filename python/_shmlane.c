/* _shmlane: the C core's public API for Python. This file only converts
 * arguments, calls the core with the GIL released where it may block, keeps
 * Ctrl-C working, and maps error codes to exceptions; everything else lives
 * in the pure-Python package (python/shmlane/). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "shmlane.h"

/* Longest stretch a Ctrl-C waits during calls that signals do not interrupt
 * (the robust mutex, the open retry loop). */
#define SLICE_NS 50000000LL
/* run_blocking()'s result when a Python exception is set; no core code is this. */
#define PY_ERROR INT_MIN

typedef struct {
  PyTypeObject *handle_type;
  PyObject *error;     /* shmlane.Error */
  PyObject *corrupt;   /* shmlane.CorruptSegment(Error) */
  PyObject *mismatch;  /* shmlane.LayoutMismatch(Error, ValueError): raised by the Python layer */
  PyObject *recovered; /* shmlane.LockRecovered(Warning): warned by the Python layer */
} modstate;

/* One open segment. The mapping must outlive every buffer exported from it
 * and every blocking call running without the GIL: `pins` counts both, and
 * close() only marks the handle closed; the segment is released (unmapped)
 * when the last pin goes. All fields are touched only with the GIL held. */
typedef struct {
  PyObject ob_base; /* PyObject_HEAD, spelled out for clang-format */
  shl_segment *seg; /* NULL once released */
  bool closed;
  bool locked; /* this handle holds the segment's lock */
  Py_ssize_t pins;
  int ndim;
  const char *format; /* the header's element format, owned by seg */
  Py_ssize_t itemsize, len;
  Py_ssize_t shape[SHL_MAX_NDIM], strides[SHL_MAX_NDIM];
  bool c_contiguous, f_contiguous, readonly;
  char name[SHL_NAME_MAX + 1];
} Handle;

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- errors */

enum err_context { AT_CREATE, AT_OPEN, AT_USE };

static bool is_header_error(int rc) {
  switch (rc) {
    case SHL_E_NOT_SHMLANE:
    case SHL_E_VERSION:
    case SHL_E_TRUNCATED:
    case SHL_E_BAD_HEADER:
    case SHL_E_BAD_KIND:
    case SHL_E_BAD_SHAPE:
    case SHL_E_BAD_STRIDES:
    case SHL_E_BAD_FORMAT:
    case SHL_E_ITEMSIZE: return true;
    default: return false;
  }
}

static void set_oserror(PyObject *type, int err, const char *text, const char *name) {
  PyObject *exc = PyObject_CallFunction(type, "iss", err, text, name);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
}

/* Raises the exception for core code rc about segment `name`; returns NULL. */
static PyObject *set_error(modstate *st, int rc, const char *name, enum err_context where) {
  const char *text = shl_strerror(rc);
  if (rc == SHL_E_READONLY) {
    set_oserror(PyExc_PermissionError, EACCES, text, name);
  } else if (rc == SHL_E_NOT_READY) {
    set_oserror(PyExc_OSError, ETIMEDOUT, text, name); /* OSError picks TimeoutError */
  } else if (rc > -4096 && rc < 0) {
    /* OSError picks FileNotFoundError, PermissionError, TimeoutError, ... */
    set_oserror(PyExc_OSError, -rc, rc == -ETIMEDOUT ? "timed out" : text, name);
  } else if (rc == SHL_E_BAD_NAME) {
    PyErr_Format(PyExc_ValueError,
                 "invalid segment name '%s': 1 to %d characters from "
                 "[A-Za-z0-9._-], starting with a letter or digit",
                 name, SHL_NAME_MAX);
  } else if (is_header_error(rc)) {
    /* At create the caller's layout is at fault; later, the header in memory is. */
    PyErr_Format(where == AT_CREATE ? PyExc_ValueError : st->corrupt, "segment '%s': %s (%s)", name,
                 text, shl_err_name(rc));
  } else {
    PyErr_Format(st->error, "segment '%s': %s (%s)", name, text, shl_err_name(rc));
  }
  return NULL;
}

static PyObject *closed_error(const Handle *h) {
  PyErr_Format(PyExc_ValueError, "segment '%s' is closed", h->name);
  return NULL;
}

/* ---------------------------------------------------------------- blocking calls */

/* Timeout in seconds (None: forever) to nanoseconds (-1: forever). */
static int timeout_converter(PyObject *obj, void *out) {
  int64_t *ns = out;
  if (obj == Py_None) {
    *ns = -1;
    return 1;
  }
  double s = PyFloat_AsDouble(obj);
  if (s == -1.0 && PyErr_Occurred()) return 0;
  if (isnan(s) || s < 0) {
    PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number or None");
    return 0;
  }
  *ns = s * 1e9 >= (double)(INT64_MAX / 2) ? -1 : (int64_t)(s * 1e9);
  return 1;
}

static void release_if_done(Handle *h) {
  if (h->closed && h->pins == 0 && h->seg) {
    shl_close(h->seg); /* also unlocks if this handle still holds the lock */
    h->seg = NULL;
    h->locked = false;
  }
}

/* After a blocking call during which another thread closed the handle. */
static PyObject *closed_meanwhile(Handle *h) {
  release_if_done(h);
  return closed_error(h);
}

typedef int (*step_fn)(void *ctx, int64_t timeout_ns);

/* Calls step() with the GIL released until it returns something other than
 * `again` or the time is up (then returns `expired`). With slice_ns > 0 each
 * call gets at most that long, for calls that signals do not interrupt.
 * Between calls, signal handlers run: an exception from one (Ctrl-C) ends the
 * loop with PY_ERROR. `pin` (NULL when there is no handle yet) stays mapped
 * during each call; if another thread closes it meanwhile, the loop ends with
 * the last result and the caller must check pin->closed. */
static int run_blocking(Handle *pin, step_fn step, void *ctx, int64_t timeout_ns, int64_t slice_ns,
                        int again, int expired) {
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : monotonic_ns() + timeout_ns;
  for (bool first = true;; first = false) {
    int64_t left = timeout_ns < 0 ? -1 : deadline - monotonic_ns();
    if (timeout_ns >= 0 && left <= 0) {
      if (!first) return expired;
      left = 0;
    }
    int64_t t = slice_ns > 0 && (left < 0 || left > slice_ns) ? slice_ns : left;
    if (pin) pin->pins++;
    PyThreadState *gil = PyEval_SaveThread();
    int rc = step(ctx, t);
    PyEval_RestoreThread(gil);
    if (pin) pin->pins--;
    if (rc != again || (pin && pin->closed)) return rc;
    if (PyErr_CheckSignals() < 0) return PY_ERROR;
  }
}

/* ---------------------------------------------------------------- Handle */

static modstate *handle_state(Handle *h) { return PyType_GetModuleState(Py_TYPE(h)); }

static bool contiguous(const Handle *h, bool fortran) {
  Py_ssize_t expect = h->itemsize;
  for (int k = 0; k < h->ndim; k++) {
    int i = fortran ? k : h->ndim - 1 - k;
    if (h->shape[i] == 0) return true;
    if (h->shape[i] != 1 && h->strides[i] != expect) return false;
    expect *= h->shape[i];
  }
  return true;
}

/* Wraps seg (taking ownership) in a new Handle. */
static PyObject *handle_new(modstate *st, shl_segment *seg) {
  shl_layout layout;
  shl_get_layout(seg, &layout);
  /* The core proved that every element lies in the payload, so the byte
   * count fits, unless a zero-length dimension lets the others be anything. */
  bool empty = false;
  for (uint32_t i = 0; i < layout.ndim; i++) {
    empty |= layout.shape[i] == 0;
    if (layout.shape[i] > (uint64_t)PY_SSIZE_T_MAX || layout.strides[i] > PY_SSIZE_T_MAX ||
        layout.strides[i] < -PY_SSIZE_T_MAX) {
      set_error(st, SHL_E_BAD_SHAPE, shl_name(seg), AT_OPEN);
      shl_close(seg);
      return NULL;
    }
  }
  Py_ssize_t len = empty ? 0 : (Py_ssize_t)layout.itemsize;
  for (uint32_t i = 0; i < layout.ndim && !empty; i++) len *= (Py_ssize_t)layout.shape[i];
  Handle *h = PyObject_New(Handle, st->handle_type);
  if (!h) {
    shl_close(seg);
    return NULL;
  }
  h->seg = seg;
  h->closed = h->locked = false;
  h->pins = 0;
  h->ndim = (int)layout.ndim;
  h->format = layout.format;
  h->itemsize = (Py_ssize_t)layout.itemsize;
  for (int i = 0; i < h->ndim; i++) {
    h->shape[i] = (Py_ssize_t)layout.shape[i];
    h->strides[i] = (Py_ssize_t)layout.strides[i];
  }
  h->len = len;
  h->c_contiguous = contiguous(h, false);
  h->f_contiguous = contiguous(h, true);
  h->readonly = shl_is_readonly(seg) != 0;
  snprintf(h->name, sizeof h->name, "%s", shl_name(seg));
  return (PyObject *)h;
}

static void handle_dealloc(Handle *h) {
  PyTypeObject *type = Py_TYPE(h);
  shl_close(h->seg); /* no pins can remain: exports and calls hold references */
  type->tp_free(h);
  Py_DECREF(type);
}

static PyObject *handle_repr(Handle *h) {
  return PyUnicode_FromFormat("<shmlane._shmlane.Handle '%s'%s>", h->name,
                              h->closed ? " closed" : "");
}

/* Buffer protocol: the payload itself, described by the header's layout. */
static int handle_getbuffer(Handle *h, Py_buffer *view, int flags) {
  if (h->closed) {
    PyErr_Format(PyExc_BufferError, "segment '%s' is closed", h->name);
    return -1;
  }
  if ((flags & PyBUF_WRITABLE) && h->readonly) {
    PyErr_Format(PyExc_BufferError, "segment '%s' was opened read-only", h->name);
    return -1;
  }
  bool want_strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES;
  bool need_c = (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS || !want_strides;
  bool need_f = (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS;
  bool need_any = (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS;
  if ((need_c && !h->c_contiguous) || (need_f && !h->f_contiguous) ||
      (need_any && !h->c_contiguous && !h->f_contiguous)) {
    PyErr_Format(PyExc_BufferError, "segment '%s' is not laid out contiguously", h->name);
    return -1;
  }
  view->buf = shl_payload(h->seg);
  view->len = h->len;
  view->readonly = h->readonly;
  view->suboffsets = NULL;
  view->internal = NULL;
  if (flags & PyBUF_ND) {
    view->itemsize = h->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)h->format : NULL;
    view->ndim = h->ndim;
    view->shape = h->shape;
    view->strides = want_strides ? h->strides : NULL;
  } else { /* plain bytes */
    view->itemsize = 1;
    view->format = (flags & PyBUF_FORMAT) ? "B" : NULL;
    view->ndim = 1;
    view->shape = NULL;
    view->strides = NULL;
  }
  Py_INCREF(h);
  view->obj = (PyObject *)h;
  h->pins++;
  return 0;
}

static void handle_releasebuffer(Handle *h, Py_buffer *view) {
  (void)view;
  h->pins--;
  release_if_done(h);
}

static PyObject *handle_close(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->closed) Py_RETURN_NONE;
  /* Deferred unmapping must not keep other processes out of the lock. */
  if (h->locked) shl_unlock(h->seg);
  h->locked = false;
  h->closed = true;
  release_if_done(h);
  Py_RETURN_NONE;
}

static int lock_step(void *seg, int64_t timeout_ns) { return shl_lock(seg, timeout_ns); }

/* lock(timeout) -> recovered: True when the previous holder died holding it. */
static PyObject *handle_lock(Handle *h, PyObject *arg) {
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns)) return NULL;
  if (h->closed) return closed_error(h);
  int rc = run_blocking(h, lock_step, h->seg, timeout_ns, SLICE_NS, -ETIMEDOUT, -ETIMEDOUT);
  if (h->closed) {
    if (rc == 0 || rc == SHL_E_OWNER_DEAD) shl_unlock(h->seg);
    return closed_meanwhile(h);
  }
  if (rc == PY_ERROR) return NULL;
  if (rc < 0 && rc != SHL_E_OWNER_DEAD) return set_error(handle_state(h), rc, h->name, AT_USE);
  h->locked = true;
  return PyBool_FromLong(rc == SHL_E_OWNER_DEAD);
}

static PyObject *handle_unlock(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  int rc = shl_unlock(h->seg);
  if (rc < 0) return set_error(handle_state(h), rc, h->name, AT_USE);
  h->locked = false;
  Py_RETURN_NONE;
}

static PyObject *handle_notify(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  uint64_t v;
  int rc = shl_notify(h->seg, &v);
  if (rc < 0) return set_error(handle_state(h), rc, h->name, AT_USE);
  return PyLong_FromUnsignedLongLong(v);
}

struct wait_ctx {
  shl_segment *seg;
  uint64_t since, seen;
};

static int wait_step(void *ctx, int64_t timeout_ns) {
  struct wait_ctx *w = ctx;
  static const shl_wait_opts opts = {SHL_WAIT_INTERRUPTIBLE, 0};
  return shl_wait_ex(w->seg, w->since, timeout_ns, &opts, &w->seen);
}

/* wait(since, timeout) -> the version seen once it differs from since. */
static PyObject *handle_wait(Handle *h, PyObject *args) {
  unsigned long long since;
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "KO&:wait", &since, timeout_converter, &timeout_ns)) return NULL;
  if (h->closed) return closed_error(h);
  struct wait_ctx w = {h->seg, since, 0};
  int rc = run_blocking(h, wait_step, &w, timeout_ns, 0, -EINTR, -ETIMEDOUT);
  if (h->closed) return closed_meanwhile(h);
  if (rc == PY_ERROR) return NULL;
  if (rc < 0) return set_error(handle_state(h), rc, h->name, AT_USE);
  return PyLong_FromUnsignedLongLong(w.seen);
}

static PyObject *handle_layout(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  PyObject *shape = PyTuple_New(h->ndim), *strides = PyTuple_New(h->ndim);
  if (!shape || !strides) goto fail;
  for (int i = 0; i < h->ndim; i++) {
    PyObject *dim = PyLong_FromSsize_t(h->shape[i]), *stride = PyLong_FromSsize_t(h->strides[i]);
    if (dim) PyTuple_SET_ITEM(shape, i, dim);
    if (stride) PyTuple_SET_ITEM(strides, i, stride);
    if (!dim || !stride) goto fail;
  }
  return Py_BuildValue("{s:s,s:n,s:N,s:N,s:I}", "format", h->format, "itemsize", h->itemsize,
                       "shape", shape, "strides", strides, "kind", (unsigned)shl_kind(h->seg));
fail:
  Py_XDECREF(shape);
  Py_XDECREF(strides);
  return NULL;
}

static PyObject *handle_info(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  shl_info info;
  int rc = shl_get_info(h->seg, &info);
  if (rc < 0) return set_error(handle_state(h), rc, h->name, AT_USE);
  return Py_BuildValue("{s:s,s:I,s:I,s:K,s:K,s:K,s:i,s:i,s:K,s:I,s:I}", "name", info.name, "kind",
                       info.kind, "format_version", info.format_version, "total_size",
                       (unsigned long long)info.total_size, "payload_size",
                       (unsigned long long)info.payload_size, "version",
                       (unsigned long long)info.version, "creator_pid", (int)info.creator_pid,
                       "creator_alive", info.creator_alive, "created_ns",
                       (unsigned long long)info.created_ns, "mode", info.mode, "uid", info.uid);
}

static PyObject *handle_get_version(Handle *h, void *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  return PyLong_FromUnsignedLongLong(shl_version(h->seg));
}

static PyObject *handle_get_name(Handle *h, void *unused) {
  (void)unused;
  return PyUnicode_FromString(h->name);
}

static PyObject *handle_get_closed(Handle *h, void *unused) {
  (void)unused;
  return PyBool_FromLong(h->closed);
}

static PyObject *handle_get_readonly(Handle *h, void *unused) {
  (void)unused;
  return PyBool_FromLong(h->readonly);
}

static PyObject *handle_get_nbytes(Handle *h, void *unused) {
  (void)unused;
  if (h->closed) return closed_error(h);
  return PyLong_FromUnsignedLongLong(shl_payload_size(h->seg));
}

static PyMethodDef handle_methods[] = {
    {"close", (PyCFunction)handle_close, METH_NOARGS,
     "Detach; the mapping goes when the last exported buffer is released."},
    {"lock", (PyCFunction)handle_lock, METH_O,
     "lock(timeout) -> recovered. Blocks with the GIL released; Ctrl-C interrupts."},
    {"unlock", (PyCFunction)handle_unlock, METH_NOARGS, "Release the lock."},
    {"notify", (PyCFunction)handle_notify, METH_NOARGS, "Bump the version, wake waiters."},
    {"wait", (PyCFunction)handle_wait, METH_VARARGS,
     "wait(since, timeout) -> version. Blocks with the GIL released; Ctrl-C interrupts."},
    {"layout", (PyCFunction)handle_layout, METH_NOARGS,
     "The header's layout: format, itemsize, shape, strides, kind."},
    {"info", (PyCFunction)handle_info, METH_NOARGS, "The header's bookkeeping fields."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"name", (getter)handle_get_name, NULL, "Segment name.", NULL},
    {"closed", (getter)handle_get_closed, NULL, "True after close().", NULL},
    {"readonly", (getter)handle_get_readonly, NULL, "Payload mapped read-only.", NULL},
    {"nbytes", (getter)handle_get_nbytes, NULL, "Payload size in bytes.", NULL},
    {"version", (getter)handle_get_version, NULL, "Current change counter.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "An open shmlane segment; exports its payload through the buffer protocol."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_bf_getbuffer, handle_getbuffer},
    {Py_bf_releasebuffer, handle_releasebuffer},
    {0, NULL},
};

/* Handles come only from create() and open(). */
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define HANDLE_FLAGS \
  (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE)
#else /* Python 3.9: tp_new is cleared in mod_exec instead */
#define HANDLE_FLAGS Py_TPFLAGS_DEFAULT
#endif

static PyType_Spec handle_spec = {"shmlane._shmlane.Handle", sizeof(Handle), 0, HANDLE_FLAGS,
                                  handle_slots};

/* ---------------------------------------------------------------- module functions */

/* create(name, format, shape, mode, flags) -> Handle */
static PyObject *mod_create(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  const char *name, *format;
  PyObject *shape;
  unsigned mode, flags;
  if (!PyArg_ParseTuple(args, "ssO!II:create", &name, &format, &PyTuple_Type, &shape, &mode,
                        &flags))
    return NULL;
  shl_layout layout = {.format = format};
  Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
  if (ndim > SHL_MAX_NDIM) {
    PyErr_Format(PyExc_ValueError, "segment '%s': at most %d dimensions", name, SHL_MAX_NDIM);
    return NULL;
  }
  layout.ndim = (uint32_t)ndim;
  for (Py_ssize_t i = 0; i < ndim; i++) {
    layout.shape[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape, i));
    if (PyErr_Occurred()) return NULL;
  }
  shl_create_opts opts = {.mode = mode, .flags = flags};
  shl_segment *seg;
  PyThreadState *gil = PyEval_SaveThread(); /* reserving a large payload takes a while */
  int rc = shl_create(&seg, name, &layout, &opts);
  PyEval_RestoreThread(gil);
  if (rc < 0) return set_error(st, rc, name, AT_CREATE);
  return handle_new(st, seg);
}

struct open_ctx {
  shl_segment *seg;
  const char *name;
  uint32_t flags;
};

static int open_step(void *ctx, int64_t timeout_ns) {
  struct open_ctx *o = ctx;
  return shl_open(&o->seg, o->name, o->flags, timeout_ns);
}

/* open(name, readonly, timeout) -> Handle. Waits for a creator still initialising. */
static PyObject *mod_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  struct open_ctx o = {NULL, NULL, 0};
  int readonly;
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "spO&:open", &o.name, &readonly, timeout_converter, &timeout_ns))
    return NULL;
  o.flags = readonly ? SHL_OPEN_READONLY : 0;
  int rc =
      run_blocking(NULL, open_step, &o, timeout_ns, SLICE_NS, SHL_E_NOT_READY, SHL_E_NOT_READY);
  if (rc == PY_ERROR) return NULL;
  if (rc < 0) return set_error(st, rc, o.name, AT_OPEN);
  return handle_new(st, o.seg);
}

static PyObject *mod_unlink(PyObject *mod, PyObject *arg) {
  const char *name = PyUnicode_AsUTF8(arg);
  if (!name) return NULL;
  int rc = shl_unlink(name);
  if (rc < 0) return set_error(PyModule_GetState(mod), rc, name, AT_USE);
  Py_RETURN_NONE;
}

static int collect_name(const char *name, void *list) {
  PyObject *s = PyUnicode_FromString(name);
  int rc = s ? PyList_Append(list, s) : -1;
  Py_XDECREF(s);
  return rc < 0 ? 1 : 0;
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
    {"open", mod_open, METH_VARARGS, "open(name, readonly, timeout) -> Handle"},
    {"unlink", mod_unlink, METH_O, "unlink(name): remove a segment's name."},
    {"names", mod_names, METH_NOARGS, "names() -> list of segment names."},
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

static int mod_exec(PyObject *mod) {
  modstate *st = PyModule_GetState(mod);
  st->handle_type = (PyTypeObject *)PyType_FromModuleAndSpec(mod, &handle_spec, NULL);
  if (!st->handle_type) return -1;
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
  st->handle_type->tp_new = NULL;
#endif
  st->error =
      PyErr_NewExceptionWithDoc("shmlane.Error", "Base class of shmlane's own errors.", NULL, NULL);
  if (!st->error) return -1;
  st->corrupt = PyErr_NewExceptionWithDoc("shmlane.CorruptSegment",
                                          "A segment's header failed validation.", st->error, NULL);
  if (!st->corrupt) return -1;
  PyObject *bases = PyTuple_Pack(2, st->error, PyExc_ValueError);
  if (!bases) return -1;
  st->mismatch = PyErr_NewExceptionWithDoc("shmlane.LayoutMismatch",
                                           "The segment's layout differs from the one asked for.",
                                           bases, NULL);
  Py_DECREF(bases);
  if (!st->mismatch) return -1;
  st->recovered = PyErr_NewExceptionWithDoc(
      "shmlane.LockRecovered", "The lock's previous holder died holding it.", PyExc_Warning, NULL);
  if (!st->recovered) return -1;
  if (add_ref(mod, "Handle", (PyObject *)st->handle_type) < 0 ||
      add_ref(mod, "Error", st->error) < 0 || add_ref(mod, "CorruptSegment", st->corrupt) < 0 ||
      add_ref(mod, "LayoutMismatch", st->mismatch) < 0 ||
      add_ref(mod, "LockRecovered", st->recovered) < 0)
    return -1;
  if (PyModule_AddStringConstant(mod, "core_version", shl_version_string()) < 0 ||
      PyModule_AddIntConstant(mod, "NAME_MAX", SHL_NAME_MAX) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_ARRAY", SHL_KIND_ARRAY) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STRUCT", SHL_KIND_STRUCT) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STREAM", SHL_KIND_STREAM) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_REPLACE", SHL_CREATE_REPLACE) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_UNLINK_ON_CLOSE", SHL_CREATE_UNLINK_ON_CLOSE) < 0)
    return -1;
  return 0;
}

static int mod_traverse(PyObject *mod, visitproc visit, void *arg) {
  modstate *st = PyModule_GetState(mod);
  Py_VISIT(st->handle_type);
  Py_VISIT(st->error);
  Py_VISIT(st->corrupt);
  Py_VISIT(st->mismatch);
  Py_VISIT(st->recovered);
  return 0;
}

static int mod_clear(PyObject *mod) {
  modstate *st = PyModule_GetState(mod);
  Py_CLEAR(st->handle_type);
  Py_CLEAR(st->error);
  Py_CLEAR(st->corrupt);
  Py_CLEAR(st->mismatch);
  Py_CLEAR(st->recovered);
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
