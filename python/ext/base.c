/* What the three handle types (Handle, Writer, Reader) share: the lifetime
 * pins that keep a core object mapped, blocking calls with the GIL released,
 * the buffer protocol, and the arguments every module function converts. */
#include <errno.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "ext.h"

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void release_if_done(Base *b) {
  if (b->closed && b->pins == 0) b->drop(b);
}

void unpin_base(Base *b) {
  b->pins--;
  release_if_done(b);
}

void base_close(Base *b) {
  b->closed = true;
  release_if_done(b);
}

bool busy_here(const Base *b, bool busy) {
  return busy && b->pid == (long)getpid(); /* the system call only when busy */
}

PyObject *closed_meanwhile(Base *b) {
  release_if_done(b);
  return closed_error(b);
}

PyObject *stream_failed(Base *b, int rc) {
  if (b->closed) return closed_meanwhile(b);
  if (rc == PY_ERROR) return NULL;
  return stream_error(b, rc);
}

int timeout_converter(PyObject *obj, void *out) {
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

/* Calls step() with the GIL released until it returns something other than
 * `again` or -EINTR, or the time is up (then returns `expired`). With
 * slice_ns > 0 each call gets at most that long, for calls that signals do
 * not interrupt. Between calls, signal handlers run: an exception from one
 * (Ctrl-C) ends the loop with PY_ERROR; otherwise the wait goes on with the
 * time left, unless pin's stop hook says to end it (then `expired`, also
 * before the first call). `pin` (NULL when there is no object yet) stays alive during
 * each call, and its idle hook runs after it; if another thread closes it
 * meanwhile, the loop ends with the last result and the caller must check
 * pin->closed. */
int run_blocking(Base *pin, step_fn step, void *ctx, int64_t timeout_ns, int64_t slice_ns,
                        int again, int expired) {
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : monotonic_ns() + timeout_ns;
  for (bool first = true;; first = false) {
    int64_t left = timeout_ns < 0 ? -1 : deadline - monotonic_ns();
    if (timeout_ns >= 0 && left <= 0) {
      if (!first) return expired;
      left = 0;
    }
    if (pin && pin->stop && pin->stop(pin)) return expired;
    int64_t t = slice_ns > 0 && (left < 0 || left > slice_ns) ? slice_ns : left;
    if (pin) pin->pins++, pin->running++;
    PyThreadState *gil = PyEval_SaveThread();
    int rc = step(ctx, t);
    PyEval_RestoreThread(gil);
    if (pin) {
      if (--pin->running == 0 && pin->idle) pin->idle(pin);
      pin->pins--;
    }
    if ((rc != again && rc != -EINTR) || (pin && pin->closed)) return rc;
    if (PyErr_CheckSignals() < 0) return PY_ERROR;
  }
}

static bool contiguous(const Layout *l, bool fortran) {
  Py_ssize_t expect = l->itemsize;
  for (int k = 0; k < l->ndim; k++) {
    int i = 1 + (fortran ? k : l->ndim - 1 - k);
    if (l->shape[i] == 0) return true;
    if (l->shape[i] != 1 && l->strides[i] != expect) return false;
    expect *= l->shape[i];
  }
  return true;
}

int base_init(Base *b, const shl_segment *seg, const char *what, void (*drop)(Base *)) {
  b->drop = drop; /* first: dealloc drops the core object on any failure below */
  b->idle = NULL;
  b->stop = NULL;
  b->what = what;
  b->closed = false;
  b->pid = (long)getpid();
  b->pins = 0;
  b->running = 0;
  b->kind = shl_kind(seg);
  snprintf(b->name, sizeof b->name, "%s", shl_name(seg));
  return layout_init(&b->layout, seg);
}

int layout_init(Layout *l, const shl_segment *seg) {
  shl_layout layout;
  shl_get_layout(seg, &layout);
  /* The core proved that every element lies in the payload, so the byte
   * count fits, unless a zero-length dimension lets the others be anything. */
  bool empty = false;
  for (uint32_t i = 0; i < layout.ndim; i++) {
    empty |= layout.shape[i] == 0;
    if (layout.shape[i] > (uint64_t)PY_SSIZE_T_MAX || layout.strides[i] > PY_SSIZE_T_MAX ||
        layout.strides[i] < -PY_SSIZE_T_MAX)
      return SHL_E_BAD_SHAPE;
  }
  l->len = empty ? 0 : (Py_ssize_t)layout.itemsize;
  for (uint32_t i = 0; i < layout.ndim && !empty; i++) l->len *= (Py_ssize_t)layout.shape[i];
  l->ndim = (int)layout.ndim;
  l->format = layout.format;
  l->itemsize = (Py_ssize_t)layout.itemsize;
  l->shape[0] = 0;
  l->strides[0] = l->len;
  for (int i = 0; i < l->ndim; i++) {
    l->shape[1 + i] = (Py_ssize_t)layout.shape[i];
    l->strides[1 + i] = (Py_ssize_t)layout.strides[i];
  }
  l->c_contiguous = contiguous(l, false);
  l->f_contiguous = contiguous(l, true);
  return 0;
}

/* Fills `view` with buf as layout l describes it (probe: as zero frames)
 * for `exporter`, which the view keeps alive; the caller has checked a
 * writable request and counts the export. b names it in errors. */
int fill_buffer(Py_buffer *view, PyObject *exporter, const Base *b, const Layout *l, void *buf,
                bool readonly, bool probe, int flags) {
  bool want_strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES;
  bool need_c = (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS || !want_strides;
  bool need_f = (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS;
  bool need_any = (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS;
  if (!probe && ((need_c && !l->c_contiguous) || (need_f && !l->f_contiguous) ||
                 (need_any && !l->c_contiguous && !l->f_contiguous))) {
    PyErr_Format(PyExc_BufferError, "%s '%s' is not laid out contiguously", b->what, b->name);
    return -1;
  }
  view->buf = buf;
  view->len = probe ? 0 : l->len;
  view->readonly = readonly;
  view->suboffsets = NULL;
  view->internal = NULL;
  if (flags & PyBUF_ND) {
    view->itemsize = l->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)l->format : NULL;
    view->ndim = l->ndim + probe;
    view->shape = (Py_ssize_t *)(probe ? l->shape : l->shape + 1);
    view->strides = want_strides ? (Py_ssize_t *)(probe ? l->strides : l->strides + 1) : NULL;
  } else { /* plain bytes */
    view->itemsize = 1;
    view->format = (flags & PyBUF_FORMAT) ? "B" : NULL;
    view->ndim = 1;
    view->shape = NULL;
    view->strides = NULL;
  }
  Py_INCREF(exporter);
  view->obj = exporter;
  return 0;
}

void base_dealloc(Base *b) {
  PyTypeObject *type = Py_TYPE((PyObject *)b);
  /* Exports, samples and calls hold references; only a lock whose Held was
   * dropped unreleased may still pin: the core's close then waits for its holder. */
  b->drop(b);
  free_object(type, b);
  Py_DECREF(type);
}

void free_object(PyTypeObject *type, void *obj) {
  freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
  tp_free(obj);
}

PyObject *base_repr(Base *b) {
  PyObject *type = type_name((PyObject *)b);
  PyObject *repr = type ? PyUnicode_FromFormat("<%U '%s'%s>", type, b->name,
                                               b->closed ? " closed" : "")
                        : NULL;
  Py_XDECREF(type);
  return repr;
}

PyObject *base_layout(Base *b, PyObject *unused) {
  (void)unused;
  if (b->closed) return closed_error(b);
  const Layout *l = &b->layout;
  PyObject *shape = PyTuple_New(l->ndim), *strides = PyTuple_New(l->ndim);
  if (!shape || !strides) goto fail;
  for (int i = 0; i < l->ndim; i++) {
    PyObject *dim = PyLong_FromSsize_t(l->shape[1 + i]);
    PyObject *stride = PyLong_FromSsize_t(l->strides[1 + i]);
    if (dim) PyTuple_SetItem(shape, i, dim); /* steals dim: cannot fail on a new tuple */
    if (stride) PyTuple_SetItem(strides, i, stride);
    if (!dim || !stride) goto fail;
  }
  return Py_BuildValue("{s:s,s:n,s:N,s:N,s:I,s:O}", "format", l->format, "itemsize", l->itemsize,
                       "shape", shape, "strides", strides, "kind", (unsigned)b->kind,
                       "c_contiguous", l->c_contiguous ? Py_True : Py_False);
fail:
  Py_XDECREF(shape);
  Py_XDECREF(strides);
  return NULL;
}

/* The stream's reader entries in use, each (pid, alive, policy, pinned mask,
 * next_seq, lost): what each reader recorded, for people (unchecked). */
static PyObject *reader_entries(Base *b, const shl_segment *seg, uint32_t max_readers) {
  PyObject *list = PyList_New(0);
  for (uint32_t i = 0; list && i < max_readers; i++) {
    shl_stream_reader r = SHL_STREAM_READER_INIT;
    int rc = shl_stream_get_reader(seg, i, &r);
    if (rc == -ERANGE) break; /* fewer entries than counted: the header changed meanwhile */
    if (rc < 0) {
      Py_DECREF(list);
      return set_error(state_of((PyObject *)b), rc, b->name, AT_STREAM);
    }
    if (rc == 0) continue;
    PyObject *entry = Py_BuildValue("(iiIKKK)", (int)r.pid, r.alive, r.policy,
                                    (unsigned long long)r.pinned, (unsigned long long)r.next_seq,
                                    (unsigned long long)r.lost);
    if (!entry || PyList_Append(list, entry) < 0) Py_CLEAR(list);
    Py_XDECREF(entry);
  }
  return list;
}

PyObject *stream_info(Base *b, const shl_segment *seg) {
  shl_stream_info s = SHL_STREAM_INFO_INIT;
  int rc = shl_stream_get_info(seg, &s);
  if (rc < 0) return set_error(state_of((PyObject *)b), rc, b->name, AT_STREAM);
  PyObject *entries = reader_entries(b, seg, s.max_readers);
  if (!entries) return NULL;
  return Py_BuildValue("{s:I,s:I,s:O,s:I,s:i,s:i,s:K,s:K,s:K,s:K,s:K,s:O,s:K,s:N}", "slots", s.slots,
                       "max_readers", s.max_readers, "block",
                       s.flags & SHL_STREAM_BLOCK ? Py_True : Py_False, "readers_alive",
                       s.readers_alive, "writer_pid", (int)s.writer_pid, "writer_alive",
                       s.writer_alive, "last_seq", (unsigned long long)s.last_seq,
                       "last_timestamp_ns", (unsigned long long)s.last_timestamp_ns, "slot_stride",
                       (unsigned long long)s.slot_stride, "meta_size",
                       (unsigned long long)s.meta_size, "base_seq", (unsigned long long)s.base_seq,
                       "replaced", s.replaced ? Py_True : Py_False, "period_ns",
                       (unsigned long long)s.period_ns, "reader_entries", entries);
}

PyObject *stream_meta_format(Base *b, int64_t rc, const char *format) {
  if (rc < 0) return set_error(state_of((PyObject *)b), (int)rc, b->name, AT_STREAM);
  if (rc == 0) Py_RETURN_NONE;
  return PyUnicode_FromString(format);
}

PyObject *base_get_name(Base *b, void *unused) {
  (void)unused;
  return PyUnicode_FromString(b->name);
}

PyObject *base_get_closed(Base *b, void *unused) {
  (void)unused;
  return PyBool_FromLong(b->closed);
}

int frame_buffer(Base *b, PyObject *obj, Py_buffer *view, int flags) {
  if (!b->layout.c_contiguous) {
    PyErr_Format(PyExc_ValueError, "stream '%s': frames are not contiguous; use loan()/receive()",
                 b->name);
    return -1;
  }
  if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS) < 0) return -1;
  if (view->len != b->layout.len) {
    PyErr_Format(PyExc_ValueError, "stream '%s': a frame is %zd bytes, not %zd", b->name,
                 b->layout.len, view->len);
    PyBuffer_Release(view);
    return -1;
  }
  return 0;
}

/* The probe a Writer or Reader exports: zero frames of the stream's frame
 * layout, read-only, from which NumPy learns the frame's dtype without
 * touching any slot. */
int stream_getbuffer(Base *b, Py_buffer *view, int flags, const shl_segment *seg) {
  if (b->closed) {
    PyErr_Format(PyExc_BufferError, "%s '%s' is closed", b->what, b->name);
    return -1;
  }
  if (flags & PyBUF_WRITABLE) {
    PyErr_Format(PyExc_BufferError, "%s '%s' exports no frame data", b->what, b->name);
    return -1;
  }
  if (fill_buffer(view, (PyObject *)b, b, &b->layout, shl_payload(seg), true, true, flags) < 0)
    return -1;
  b->pins++;
  return 0;
}

void stream_releasebuffer(Base *b, Py_buffer *view) {
  (void)view;
  unpin_base(b);
}


int parse_shape(PyObject *shape, shl_layout *layout, const char *name) {
  Py_ssize_t ndim = PyTuple_Size(shape);
  if (ndim > SHL_MAX_NDIM) {
    PyErr_Format(PyExc_ValueError, "segment '%s': at most %d dimensions", name, SHL_MAX_NDIM);
    return -1;
  }
  layout->ndim = (uint32_t)ndim;
  for (Py_ssize_t i = 0; i < ndim; i++) {
    layout->shape[i] = PyLong_AsUnsignedLongLong(PyTuple_GetItem(shape, i));
    if (PyErr_Occurred()) return -1;
  }
  return 0;
}

