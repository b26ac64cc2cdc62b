/* Reader: a reader of a stream (its samples are sample.c's); and the module
 * function reader_open(). */
#include <errno.h>
#include <string.h>

#include "ext.h"

/* The prepared samples, and the slots' addresses they were made over (a
 * stream the reader followed its name to has its own). */
static void forget_ready(Reader *r) {
  for (int i = 0; i < SHL_STREAM_MAX_SLOTS; i++) {
    r->slot_data[i] = NULL;
    Py_CLEAR(r->ready[i]); /* its array with it */
    if (r->ready_raw[i]) { /* exports nothing more (a caller of prepare() may keep it) */
      r->ready_raw[i]->reader = NULL;
      r->ready_raw[i]->stream = NULL;
      Py_CLEAR(r->ready_raw[i]);
    }
  }
}

static void reader_drop(Base *b) {
  Reader *r = (Reader *)b;
  forget_ready(r); /* before the layouts their arrays show */
  Py_CLEAR(r->spare);
  Py_CLEAR(r->rehearse);
  Py_CLEAR(r->adopt);
  shl_reader_close(r->r); /* frees the reader's entry; the stream stays */
  r->r = NULL;
  while (r->layouts) { /* no sample or view shows them any more: each pinned us */
    StreamLayout *older = r->layouts->older;
    PyMem_Free(r->layouts);
    r->layouts = older;
  }
}

/* No receive runs without the GIL: release the samples queued meanwhile. */
static void reader_idle(Base *b) {
  Reader *r = (Reader *)b;
  while (r->ndeferred)
    (void)shl_reader_release(r->r, &r->deferred[--r->ndeferred]); /* ours: cannot fail */
}

/* receive_slice()'s caller has given up: its claim has a taker. */
static bool reader_stop(Base *b) {
  PyObject *claim = ((Reader *)b)->stop_claim;
  return claim && PyDict_GetItemString(claim, "by") != NULL;
}

/* The layout of the stream the reader reads now, kept in r->layouts.
 * 0, a core code, or PY_ERROR. */
static int reader_set_layout(Reader *r) {
  const shl_segment *seg = shl_reader_segment(r->r);
  Layout l;
  int rc = layout_init(&l, seg);
  /* The record's size from the reader's own validated copy, never from the
   * stream as it is now (a peer may change it). */
  int64_t meta_size = rc == 0 ? shl_reader_get_meta(r->r, NULL, 0) : rc;
  if (meta_size < 0) return (int)meta_size;
  size_t len = strlen(l.format) + 1;
  StreamLayout *sl = PyMem_Malloc(sizeof *sl + len);
  if (!sl) {
    PyErr_NoMemory();
    return PY_ERROR;
  }
  memcpy(sl->format, l.format, len);
  sl->layout = l;
  sl->layout.format = sl->format;
  sl->meta_size = (Py_ssize_t)meta_size;
  sl->older = r->layouts;
  r->layouts = sl;
  r->base.layout = sl->layout;
  return 0;
}

static PyObject *reader_close(Reader *r, PyObject *unused) {
  (void)unused;
  if (r->receiving && !r->base.closed) shl_reader_wake(r->r); /* its receive() returns */
  forget_ready(r); /* hands nothing out any more; what it holds goes now */
  base_close(&r->base);
  Py_RETURN_NONE;
}

struct receive_ctx {
  shl_reader *r;
  shl_sample s;
  uint32_t spin_ns; /* SHL_SPIN_AUTO: set on the core's reader for good */
  uint32_t flags;
};

static int receive_step(void *ctx, int64_t timeout_ns) {
  struct receive_ctx *c = ctx;
  if (c->spin_ns != SHL_SPIN_AUTO) {
    shl_reader_set_spin(c->r, c->spin_ns);
    c->spin_ns = 0; /* once per receive(): later slices sleep at once */
  }
  return shl_reader_receive(c->r, &c->s, timeout_ns, c->flags);
}

/* false (error set) unless r may receive now. */
static bool reader_ready(Reader *r) {
  if (r->base.closed) return closed_error(&r->base), false;
  if (busy_here(&r->base, r->receiving)) {
    PyErr_Format(PyExc_RuntimeError, "stream '%s': another thread is receiving on this reader",
                 r->base.name);
    return false;
  }
  return true;
}

/* The next frame, pinned, for receive() and receive_into(). A frame already
 * waiting needs no GIL hand-off; otherwise waits with the GIL released, in
 * one piece (an idle reader makes no wake-up): a signal ends the core's wait
 * at once, and handlers run (Ctrl-C raises); so does shl_reader_wake() from
 * a thread that closed the reader or queued a release (done between the
 * core's calls). The caller checks r->base.closed after. */
static int receive_sample(Reader *r, int64_t timeout_ns, uint32_t flags, shl_sample *out) {
  uint32_t auto_spin = r->spin_ns == SHL_SPIN_AUTO ? SHL_SPIN_AUTO : 0;
  struct receive_ctx c = {r->r, {0}, auto_spin, SHL_WAIT_INTERRUPTIBLE | flags};
  int rc = receive_step(&c, 0);
  if (rc == -EINTR) rc = -ETIMEDOUT; /* a wake left from an earlier call: nothing came */
  if (rc == -ETIMEDOUT && timeout_ns != 0) {
    c.spin_ns = r->spin_ns;
    r->receiving = true;
    rc = run_blocking(&r->base, receive_step, &c, timeout_ns, 0, -ETIMEDOUT, -ETIMEDOUT);
    r->receiving = false;
  }
  *out = c.s;
  return rc;
}

static Sample *new_sample(Reader *r) {
  Sample *s = r->spare;
  r->spare = NULL;
  if (!s) s = PyObject_New(Sample, state_of((PyObject *)r)->sample_type);
  if (!s) return NULL;
  s->reader = NULL;
  s->pinned = s->released = s->standin = s->prepared = false;
  s->exports = 0;
  s->stream = NULL;
  return s;
}

/* The object prepared for the frame just pinned in `got`, if one was made
 * over that very address of the stream read now (spin="auto"): it takes the
 * pin and is handed out with its array; `fresh` is kept for the next call. */
static PyObject *take_ready(Reader *r, const shl_sample *got, Sample *fresh) {
  Sample *p = got->slot < SHL_STREAM_MAX_SLOTS ? r->ready_raw[got->slot] : NULL;
  if (!p || !r->ready[got->slot] || p->s.data != got->data || p->stream != r->layouts)
    return NULL;
  PyObject *out = r->ready[got->slot];
  r->ready[got->slot] = NULL;
  r->ready_raw[got->slot] = NULL;
  Py_INCREF((PyObject *)r); /* borrowed while prepared */
  p->prepared = false;
  p->s = *got;
  p->pinned = true;
  r->held++;
  r->base.pins++;
  Py_DECREF(p); /* the object holds it */
  r->spare = fresh;
  return out;
}

/* receive(timeout) -> Sample, pinned; with SHL_WAIT_RETURN_DUE in flags,
 * a stand-in when the next frame is due (spin_ns SPIN_AUTO); with `ready`,
 * the prepared object of the frame's slot if there is one. */
static PyObject *receive(Reader *r, PyObject *arg, uint32_t flags, bool ready) {
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns) || !reader_ready(r)) return NULL;
  /* Allocated first, so that no failure can leave a slot pinned. */
  Sample *s = new_sample(r);
  if (!s) return NULL;
  shl_sample got = {0};
  int rc = receive_sample(r, timeout_ns, flags, &got);
  if (rc == -EAGAIN && !r->base.closed) { /* due: a stand-in, pinning nothing */
    Py_INCREF((PyObject *)r);
    s->reader = r;
    s->s = got;
    s->standin = true;
    s->stream = r->layouts;
    return (PyObject *)s;
  }
  if (rc == 0 && !r->base.closed) {
    if (got.flags & SHL_SAMPLE_NEW_STREAM) {
      forget_ready(r); /* another mapping */
    } else if (ready) {
      PyObject *out = take_ready(r, &got, s);
      if (out) {
        r->slot_data[got.slot] = got.data;
        return out;
      }
    }
  }
  if (rc == 0) {
    Py_INCREF((PyObject *)r);
    s->reader = r;
    s->s = got;
    s->pinned = true;
    r->held++;
    r->base.pins++;
    /* The first frame from a stream the reader followed its name to. */
    if ((got.flags & SHL_SAMPLE_NEW_STREAM) && !r->base.closed) rc = reader_set_layout(r);
    s->stream = r->layouts;
    if (rc == 0 && got.slot < SHL_STREAM_MAX_SLOTS) r->slot_data[got.slot] = got.data;
  }
  if (rc < 0 || r->base.closed) {
    Py_DECREF(s); /* gives back a pin taken after close */
    return rc == PY_ERROR ? NULL : stream_failed(&r->base, rc);
  }
  return (PyObject *)s;
}

static PyObject *reader_receive(Reader *r, PyObject *arg) { return receive(r, arg, 0, false); }

/* receive_slice(timeout, claim): receive() for one call of receive_async(),
 * which may give up from another thread: once it has set claim["by"] (and
 * called interrupt()), the receive ends at once with TimeoutError, having
 * received nothing, or had received before; also if it was set before
 * this call began (interrupt() found no receive to wake). */
static PyObject *reader_receive_slice(Reader *r, PyObject *args) {
  PyObject *timeout, *claim;
  if (!PyArg_ParseTuple(args, "OO!:receive_slice", &timeout, &PyDict_Type, &claim) ||
      !reader_ready(r))
    return NULL;
  r->stop_claim = claim; /* no other receive runs: reader_ready */
  PyObject *out = receive(r, timeout, 0, false);
  r->stop_claim = NULL;
  return out;
}

/* interrupt(): wakes the receive in progress in another thread, which then
 * looks at its receive_slice() claim (and otherwise waits on). */
static PyObject *reader_interrupt(Reader *r, PyObject *unused) {
  (void)unused;
  if (busy_here(&r->base, r->receiving) && !r->base.closed) shl_reader_wake(r->r);
  Py_RETURN_NONE;
}

/* receive_ready(timeout): receive(), handing out the object prepared for
 * the frame's slot (ready()) in place of a new Sample when there is one. */
static PyObject *reader_receive_ready(Reader *r, PyObject *arg) { return receive(r, arg, 0, true); }

/* The caller's method behind the weak method `ref`, called with arg. */
static PyObject *call_owner(Reader *r, PyObject *ref, PyObject *arg) {
  PyObject *m = ref ? PyObject_CallNoArgs(ref) : Py_None;
  if (m == Py_None) { /* no reader object given, or it went */
    if (ref) Py_DECREF(m);
    return PyErr_Format(PyExc_ReferenceError,
                        "stream '%s': the Reader this receive belongs to is gone", r->base.name);
  }
  PyObject *out = m ? PyObject_CallFunctionObjArgs(m, arg, NULL) : NULL;
  Py_XDECREF(m);
  return out;
}

/* auto(rehearse, adopt): the weak methods receive_auto() calls. */
static PyObject *reader_set_auto(Reader *r, PyObject *args) {
  PyObject *rehearse, *adopt;
  if (!PyArg_ParseTuple(args, "OO:auto", &rehearse, &adopt)) return NULL;
  if (r->base.closed) return closed_error(&r->base);
  Py_INCREF(rehearse);
  Py_INCREF(adopt);
  Py_CLEAR(r->rehearse);
  Py_CLEAR(r->adopt);
  r->rehearse = rehearse;
  r->adopt = adopt;
  Py_RETURN_NONE;
}

/* receive_auto(timeout=None): Reader.receive() of spin="auto", called by the
 * caller directly. rehearse(timeout) runs the caller's rounds on the
 * stand-ins while the frame is due and returns (frame, None) if one came
 * meanwhile, else (None, the time left); then the frame: one landing in a
 * slot with a prepared object goes back to the caller as is, with no Python
 * frame on its way out (after a frame period's sleep the interpreter's
 * returns are cold, slower than the core's whole path); any other goes
 * through adopt(sample). */
static PyObject *reader_receive_auto(Reader *r, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
  Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0;
  if (nargs + nkw > 1 ||
      (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GetItem(kwnames, 0), "timeout") != 0)) {
    PyErr_SetString(PyExc_TypeError, "receive() takes one argument, timeout");
    return NULL;
  }
  /* Closed: the weak methods may be gone with the core's reader already. */
  if (r->base.closed) return closed_error(&r->base);
  PyObject *ran = call_owner(r, r->rehearse, nargs + nkw ? args[0] : Py_None);
  if (!ran) return NULL;
  PyObject *frame, *left;
  if (!PyArg_ParseTuple(ran, "OO", &frame, &left)) {
    Py_DECREF(ran);
    return NULL;
  }
  if (frame != Py_None) {
    Py_INCREF(frame);
    Py_DECREF(ran);
    return frame;
  }
  PyObject *got = receive(r, left, 0, true);
  Py_DECREF(ran);
  if (!got || Py_TYPE(got) != state_of((PyObject *)r)->sample_type) return got;
  PyObject *out = call_owner(r, r->adopt, got);
  Py_DECREF(got);
  return out;
}

/* prepare() -> [Sample]: for each slot whose address is known and that has
 * no prepared object, the sample over it, pinning nothing, kept by the
 * reader: the caller makes its object and array over it and gives them to
 * ready(). The sample refers to its reader without a reference (the reader
 * holds it); the reader cuts that link when it lets it go. */
static PyObject *reader_prepare(Reader *r, PyObject *unused) {
  (void)unused;
  if (r->base.closed) return closed_error(&r->base);
  PyObject *list = PyList_New(0);
  for (uint32_t i = 0; list && i < SHL_STREAM_MAX_SLOTS; i++) {
    if (!r->slot_data[i] || r->ready[i]) continue;
    if (!r->ready_raw[i]) {
      Sample *s = new_sample(r);
      if (!s) {
        Py_CLEAR(list);
        break;
      }
      s->reader = r;
      s->prepared = true;
      s->s = (shl_sample){0};
      s->s.data = r->slot_data[i];
      s->s.slot = i;
      s->stream = r->layouts;
      r->ready_raw[i] = s;
    }
    if (PyList_Append(list, (PyObject *)r->ready_raw[i]) < 0) Py_CLEAR(list);
  }
  return list;
}

/* ready(sample, obj): obj (holding sample and its array) is what
 * receive_ready() hands out for the next frame pinned at sample's address. */
static PyObject *reader_set_ready(Reader *r, PyObject *args) {
  PyObject *obj;
  Sample *s;
  if (!PyArg_ParseTuple(args, "O!O:ready", state_of((PyObject *)r)->sample_type, &s, &obj))
    return NULL;
  if (r->base.closed) return closed_error(&r->base);
  if (!s->prepared || s->reader != r || r->ready_raw[s->s.slot] != s || r->ready[s->s.slot]) {
    PyErr_SetString(PyExc_ValueError, "not a sample prepare() gave for this stream");
    return NULL;
  }
  Py_INCREF(obj);
  r->ready[s->s.slot] = obj;
  Py_RETURN_NONE;
}

/* receive_due(timeout) -> Sample; while the next frame is due (the
 * predictive wait's window is open), at once a stand-in, on which the caller
 * warms up its own path to a frame before it receives without the flag. */
static PyObject *reader_receive_due(Reader *r, PyObject *arg) {
  return receive(r, arg, SHL_WAIT_RETURN_DUE, false);
}

static bool same_frames(const Layout *a, const Layout *b) {
  if (a->len != b->len || a->ndim != b->ndim || strcmp(a->format, b->format) != 0) return false;
  for (int i = 1; i <= a->ndim; i++)
    if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return false;
  return true;
}

/* receive_into(buffer, timeout) -> (seq, timestamp_ns, lost): the next
 * frame's bytes copied into the buffer, its slot released at once, without
 * a Sample or an array (small messages). */
static PyObject *reader_receive_into(Reader *r, PyObject *args) {
  PyObject *obj;
  int64_t timeout_ns;
  Py_buffer dst;
  if (!PyArg_ParseTuple(args, "OO&:receive_into", &obj, timeout_converter, &timeout_ns) ||
      !reader_ready(r) || frame_buffer(&r->base, obj, &dst, PyBUF_WRITABLE) < 0)
    return NULL;
  shl_sample got;
  Layout before = r->base.layout;
  int rc = receive_sample(r, timeout_ns, 0, &got);
  bool moved = rc == 0 && (got.flags & SHL_SAMPLE_NEW_STREAM) && !r->base.closed;
  if (moved) rc = reader_set_layout(r);
  /* A followed stream whose frames differ: its first frame would not fit. */
  bool refused = rc == 0 && moved && !same_frames(&before, &r->base.layout);
  if (rc == 0 && !refused) memcpy(dst.buf, got.data, (size_t)dst.len);
  if (rc == 0) (void)shl_reader_release(r->r, &got); /* pinned just now: cannot fail */
  PyBuffer_Release(&dst);
  if (rc == PY_ERROR) return NULL;
  if (refused) {
    PyErr_Format(state_of((PyObject *)r)->layout_changed,
                 "stream '%s' was replaced by one with other frames (%zd bytes, format '%s'); "
                 "its frame %llu was dropped: receive() them, or receive_into() a buffer "
                 "that fits", r->base.name, r->base.layout.len, r->base.layout.format,
                 (unsigned long long)got.seq);
    return NULL;
  }
  if (rc < 0 || r->base.closed) return stream_failed(&r->base, rc);
  return Py_BuildValue("KKK", (unsigned long long)got.seq, (unsigned long long)got.timestamp_ns,
                       (unsigned long long)got.lost);
}

static PyObject *reader_meta_format(Reader *r, PyObject *unused) {
  (void)unused;
  if (r->base.closed) return closed_error(&r->base);
  char format[SHL_FORMAT_MAX + 1];
  return stream_meta_format(&r->base, shl_reader_get_meta(r->r, format, sizeof format), format);
}

static PyObject *reader_info(Reader *r, PyObject *unused) {
  (void)unused;
  if (r->base.closed) return closed_error(&r->base);
  return stream_info(&r->base, shl_reader_segment(r->r));
}

int reader_getbuffer(Reader *r, Py_buffer *view, int flags) {
  return stream_getbuffer(&r->base, view, flags, r->r ? shl_reader_segment(r->r) : NULL);
}

static PyMethodDef reader_methods[] = {
    {"close", (PyCFunction)reader_close, METH_NOARGS,
     "Leave the stream once no sample is pinned any more."},
    {"receive", (PyCFunction)reader_receive, METH_O,
     "receive(timeout) -> Sample. Blocks with the GIL released; Ctrl-C interrupts."},
    {"receive_slice", (PyCFunction)reader_receive_slice, METH_VARARGS,
     "receive_slice(timeout, claim) -> Sample: receive() that ends (TimeoutError) once claim (a "
     "dict) has a key 'by' and interrupt() is called."},
    {"interrupt", (PyCFunction)reader_interrupt, METH_NOARGS,
     "Wake the receive in progress in another thread (its receive_slice() claim decides)."},
    {"receive_due", (PyCFunction)reader_receive_due, METH_O,
     "receive_due(timeout) -> Sample; when spin_ns is SPIN_AUTO and the next frame is due, at "
     "once a stand-in (not pinned; exports zero frames) to warm up on, then receive()."},
    {"receive_ready", (PyCFunction)reader_receive_ready, METH_O,
     "receive_ready(timeout) -> the object given to ready() for the frame's slot, or a Sample."},
    {"receive_auto", (PyCFunction)(void (*)(void))reader_receive_auto,
     METH_FASTCALL | METH_KEYWORDS,
     "receive_auto(timeout=None): receive() for spin=\"auto\", through the methods given to auto()."},
    {"auto", (PyCFunction)reader_set_auto, METH_VARARGS,
     "auto(rehearse, adopt): weak methods: rehearse(timeout) -> (frame or None, time left); "
     "adopt(sample) makes what receive_auto() returns for a frame with no prepared object."},
    {"prepare", (PyCFunction)reader_prepare, METH_NOARGS,
     "prepare() -> [Sample]: unpinned samples over the slots with no prepared object yet."},
    {"ready", (PyCFunction)reader_set_ready, METH_VARARGS,
     "ready(sample, obj): receive_ready() hands out obj for the next frame at sample's slot."},
    {"receive_into", (PyCFunction)reader_receive_into, METH_VARARGS,
     "receive_into(buffer, timeout) -> (seq, timestamp_ns, lost). Copies the next frame out."},
    {"info", (PyCFunction)reader_info, METH_NOARGS,
     "The stream's slots, readers, writer and last frame."},
    {"meta_format", (PyCFunction)reader_meta_format, METH_NOARGS,
     "The format of each frame's metadata record in the stream read now, or None."},
    BASE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyObject *reader_get_spin_ns(Reader *r, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLong(r->spin_ns);
}

static int reader_set_spin_ns(Reader *r, PyObject *value, void *unused) {
  (void)unused;
  unsigned long ns = value ? PyLong_AsUnsignedLong(value) : (unsigned long)-1;
  if (ns == (unsigned long)-1 && (!value || PyErr_Occurred())) {
    if (!value) PyErr_SetString(PyExc_AttributeError, "spin_ns cannot be deleted");
    return -1;
  }
  if (ns > SHL_SPIN_MAX_NS && ns != SHL_SPIN_AUTO) {
    PyErr_Format(PyExc_ValueError, "spin_ns must be at most %d, or SPIN_AUTO", SHL_SPIN_MAX_NS);
    return -1;
  }
  if (r->base.closed) {
    closed_error(&r->base);
    return -1;
  }
  /* The core's own setting is kept for SPIN_AUTO (it learns from frames);
   * a fixed spin is given to each receive() (receive_step). */
  if (busy_here(&r->base, r->receiving)) {
    PyErr_Format(PyExc_RuntimeError, "stream '%s': spin_ns changed while receiving", r->base.name);
    return -1;
  }
  r->spin_ns = (uint32_t)ns;
  shl_reader_set_spin(r->r, ns == SHL_SPIN_AUTO ? SHL_SPIN_AUTO : 0);
  return 0;
}

static PyGetSetDef reader_getset[] = {
    BASE_GETSET,
    {"spin_ns", (getter)reader_get_spin_ns, (setter)reader_set_spin_ns,
     "How long receive() polls before sleeping, in ns (at most SPIN_MAX_NS), or SPIN_AUTO for the "
     "predictive wait.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot reader_slots[] = {
    {Py_tp_doc, "A reader of a stream. Exports zero frames (for the dtype); frames are samples."},
    {Py_tp_dealloc, base_dealloc},
    {Py_tp_repr, base_repr},
    {Py_tp_methods, reader_methods},
    {Py_tp_getset, reader_getset},
    {Py_bf_getbuffer, reader_getbuffer},
    {Py_bf_releasebuffer, stream_releasebuffer},
    {0, NULL},
};

PyType_Spec reader_spec = {"shmlane._shmlane.Reader", sizeof(Reader), 0, HANDLE_FLAGS,
                                  reader_slots};

struct reader_open_ctx {
  shl_reader *r;
  const char *name;
  shl_reader_opts opts;
  int rc; /* of the last try */
};

/* A stream not there yet and one its writer is still creating both mean:
 * try again in the next slice. */
static int reader_open_step(void *ctx, int64_t timeout_ns) {
  struct reader_open_ctx *o = ctx;
  o->opts.timeout_ns = timeout_ns;
  o->rc = shl_reader_open_ex(&o->r, o->name, &o->opts);
  return o->rc == SHL_E_NOT_READY ? -ENOENT : o->rc;
}

/* reader_open(name, policy, timeout, max_pinned, owner, owner_uid, flags) -> Reader.
 * Waits for the stream to appear. */
PyObject *mod_reader_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  struct reader_open_ctx o = {NULL, NULL, SHL_READER_OPTS_INIT, 0};
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "sIO&IIII:reader_open", &o.name, &o.opts.policy, timeout_converter,
                        &timeout_ns, &o.opts.max_pinned, &o.opts.owner, &o.opts.owner_uid,
                        &o.opts.flags))
    return NULL;
  int rc = run_blocking(NULL, reader_open_step, &o, timeout_ns, SLICE_NS, -ENOENT, -ENOENT);
  if (rc == PY_ERROR) return NULL;
  if (rc == -ENOENT) rc = o.rc; /* at the end: not there, or still being created */
  if (rc < 0) return set_error(st, rc, o.name, AT_STREAM_OPEN);
  Reader *r = PyObject_New(Reader, st->reader_type);
  if (!r) {
    shl_reader_close(o.r);
    return NULL;
  }
  r->r = o.r;
  r->receiving = false;
  r->stop_claim = NULL;
  r->held = 0;
  r->spin_ns = 0;
  r->ndeferred = 0;
  r->layouts = NULL;
  r->spare = NULL;
  r->rehearse = r->adopt = NULL;
  for (int i = 0; i < SHL_STREAM_MAX_SLOTS; i++) {
    r->slot_data[i] = NULL;
    r->ready_raw[i] = NULL;
    r->ready[i] = NULL;
  }
  rc = base_init(&r->base, shl_reader_segment(o.r), "stream reader", reader_drop);
  r->base.idle = reader_idle;
  r->base.stop = reader_stop;
  if (rc == 0) rc = reader_set_layout(r);
  if (rc < 0) {
    Py_DECREF(r);
    return rc == PY_ERROR ? NULL : set_error(st, rc, o.name, AT_STREAM_OPEN);
  }
  return (PyObject *)r;
}

