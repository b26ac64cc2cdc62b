/* Writer: the writer of a stream; Loan: a slot it loans, exported writable
 * until published; and the module function writer_open(). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ext.h"

static void writer_drop(Base *b) {
  Writer *w = (Writer *)b;
  shl_writer_close(w->w); /* gives up the writer role; the stream stays */
  w->w = NULL;
  if (w->frames) base_close(&w->frames->base); /* unmapped after the last view of a loan */
  Py_CLEAR(w->frames);
}

/* The outstanding loan is over: the writer may loan again. */
/* The referent of weak reference `ref` (dropped), or NULL if it is gone. */
static PyObject *take_referent(PyObject *ref) {
  PyObject *obj = ref ? PyObject_CallNoArgs(ref) : NULL;
  Py_XDECREF(ref);
  if (obj == Py_None) Py_CLEAR(obj);
  return obj;
}

/* Once the loan ends, the array arm() named is made read-only (writing
 * through it would change a frame readers may hold) and its owner's `array`
 * becomes None; whichever is gone is left. */
static void retire(Loan *l) {
  if (!l->view && !l->owner) return;
  modstate *st = state_of((PyObject *)l);
  PyObject *type, *value, *tb; /* a loan dropped while an exception is raised */
  PyErr_Fetch(&type, &value, &tb);
  PyObject *view = take_referent(l->view), *owner = take_referent(l->owner);
  l->view = l->owner = NULL;
  PyObject *done = view ? PyObject_CallMethodObjArgs(view, st->setflags, Py_False, NULL) : Py_None;
  if (!done || (owner && PyObject_SetAttr(owner, st->array, Py_None) < 0)) PyErr_Clear();
  if (done != Py_None) Py_XDECREF(done);
  Py_XDECREF(view);
  Py_XDECREF(owner);
  PyErr_Restore(type, value, tb);
}

static void end_loan(Loan *l, enum loan_state state) {
  l->state = state;
  l->writer->loan = NULL;
  retire(l);
}

static PyObject *writer_close(Writer *w, PyObject *unused) {
  (void)unused;
  if (w->base.closed) Py_RETURN_NONE;
  /* A loan() waiting in another thread returns now, not at its slice's end
   * (the core closes the writer once it has: the pin). Not in a replace(),
   * which has the core writer (w->w NULL). */
  if (busy_here(&w->base, w->loaning) && w->w) shl_writer_wake(w->w);
  if (w->loan) {
    shl_writer_discard(w->w);
    end_loan(w->loan, DISCARDED);
  }
  base_close(&w->base);
  Py_RETURN_NONE;
}

struct loan_ctx {
  shl_writer *w;
  void *frame;
  int rc; /* of the last try: SHL_E_SLOTS_PINNED or -ETIMEDOUT say why there is no slot */
};

static int loan_step(void *ctx, int64_t timeout_ns) {
  struct loan_ctx *c = ctx;
  c->rc = shl_writer_loan(c->w, &c->frame, timeout_ns);
  return c->rc == SHL_E_SLOTS_PINNED ? -ETIMEDOUT : c->rc;
}

/* false (error set) unless w's core writer is here: not closed, nor away
 * in another thread's replace() (for good in a child forked meanwhile,
 * where the core may have freed it). */
static bool writer_here(Writer *w) {
  if (w->base.closed) return closed_error(&w->base), false;
  if (w->w) return true;
  if (w->base.pid != (long)getpid()) return stream_error(&w->base, SHL_E_FORKED), false;
  PyErr_Format(PyExc_RuntimeError, "stream '%s': another thread is replacing this writer's stream",
               w->base.name);
  return false;
}

/* false (error set) unless w may loan a slot now. */
static bool writer_ready(Writer *w) {
  if (!writer_here(w)) return false;
  if (busy_here(&w->base, w->loan || w->loaning)) {
    PyErr_Format(PyExc_RuntimeError,
                 "stream '%s': a loan is already outstanding; publish or discard it first",
                 w->base.name);
    return false;
  }
  return true;
}

/* Copies a metadata record (None: leave the slot's as it is) into the
 * loaned slot; -1 with an exception set if it is not one record's bytes. */
static int put_meta(Writer *w, PyObject *meta) {
  if (meta == Py_None) return 0;
  if (!w->meta_size) {
    PyErr_Format(PyExc_ValueError, "stream '%s' carries no metadata", w->base.name);
    return -1;
  }
  Py_buffer src;
  if (PyObject_GetBuffer(meta, &src, PyBUF_C_CONTIGUOUS) < 0) return -1;
  int rc = src.len == w->meta_size ? 0 : -1;
  if (rc == 0)
    memcpy(shl_writer_meta(w->w), src.buf, (size_t)src.len);
  else
    PyErr_Format(PyExc_ValueError, "stream '%s': a metadata record is %zd bytes, not %zd",
                 w->base.name, w->meta_size, src.len);
  PyBuffer_Release(&src);
  return rc;
}

/* A slot for loan() and publish_copy(), in the core's mapping. Waits (GIL
 * released, Ctrl-C works) only while readers pin every free slot, or for
 * `all` readers on a blocking stream: most loans find a slot at once, with
 * no GIL hand-off. The core's result, PY_ERROR, or CLOSED_MEANWHILE (another
 * thread closed the writer, which woke the wait; the slot, if any, is given
 * back). In slices, for Ctrl-C: a signal does not end the core's loan, which
 * wakes as often anyway to see whether the readers that pin slots live. */
static int loan_slot(Writer *w, int64_t timeout_ns, void **frame) {
  struct loan_ctx c = {w->w, NULL, 0};
  int rc = loan_step(&c, 0);
  if (rc == -ETIMEDOUT && timeout_ns != 0) {
    w->loaning = true;
    rc = run_blocking(&w->base, loan_step, &c, timeout_ns, SLICE_NS, -ETIMEDOUT, -ETIMEDOUT);
    w->loaning = false;
  }
  if (rc == -ETIMEDOUT) rc = c.rc;
  if (w->base.closed) {
    if (rc >= 0) shl_writer_discard(w->w);
    return CLOSED_MEANWHILE;
  }
  *frame = c.frame;
  return rc;
}

/* loan(timeout) -> Loan. */
static PyObject *writer_loan(Writer *w, PyObject *arg) {
  modstate *st = state_of((PyObject *)w);
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns) || !writer_ready(w)) return NULL;
  /* Allocated first, so that no failure can leave a slot loaned. */
  Loan *l = PyObject_New(Loan, st->loan_type);
  if (!l) return NULL;
  l->writer = NULL;
  l->state = DISCARDED;
  l->meta = l->view = l->owner = NULL;
  void *frame;
  int rc = loan_slot(w, timeout_ns, &frame);
  if (rc < 0) {
    Py_DECREF(l);
    return stream_failed(&w->base, rc);
  }
  Py_INCREF((PyObject *)w);
  l->writer = w;
  Py_INCREF((PyObject *)w->frames);
  l->frames = w->frames;
  /* The same slot in the second mapping. */
  l->frame = (char *)shl_payload(w->frames->seg) +
             ((char *)frame - (char *)shl_payload(shl_writer_segment(w->w)));
  l->state = LOANED;
  w->loan = l;
  return (PyObject *)l;
}

/* publish_copy(buffer, timeout, meta=None) -> seq: the buffer's bytes as the
 * next frame, without a Loan or an array (small messages); the copy holds the GIL. */
static PyObject *writer_publish_copy(Writer *w, PyObject *args) {
  PyObject *obj, *meta = Py_None;
  int64_t timeout_ns;
  Py_buffer src;
  if (!PyArg_ParseTuple(args, "OO&|O:publish_copy", &obj, timeout_converter, &timeout_ns, &meta) ||
      !writer_ready(w) || frame_buffer(&w->base, obj, &src, PyBUF_SIMPLE) < 0)
    return NULL;
  void *frame;
  int rc = loan_slot(w, timeout_ns, &frame);
  if (rc >= 0) memcpy(frame, src.buf, (size_t)src.len);
  PyBuffer_Release(&src);
  if (rc < 0) return stream_failed(&w->base, rc);
  if (put_meta(w, meta) < 0) {
    shl_writer_discard(w->w);
    return NULL;
  }
  uint64_t seq;
  rc = shl_writer_publish(w->w, &seq);
  if (rc < 0) return stream_failed(&w->base, rc);
  return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *writer_info(Writer *w, PyObject *unused) {
  (void)unused;
  if (!writer_here(w)) return NULL;
  return stream_info(&w->base, shl_writer_segment(w->w));
}

static PyObject *writer_meta_format(Writer *w, PyObject *unused) {
  (void)unused;
  if (!writer_here(w)) return NULL;
  char format[SHL_FORMAT_MAX + 1];
  return stream_meta_format(&w->base, shl_writer_get_meta(w->w, format, sizeof format), format);
}

static PyObject *writer_set_period(Writer *w, PyObject *arg) {
  unsigned long long period_ns = PyLong_AsUnsignedLongLong(arg);
  if (period_ns == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  if (!writer_here(w)) return NULL;
  int rc = shl_writer_set_period(w->w, period_ns);
  if (rc < 0) return stream_failed(&w->base, rc);
  Py_RETURN_NONE;
}

static PyObject *writer_get_next_seq(Writer *w, void *unused) {
  (void)unused;
  if (!writer_here(w)) return NULL;
  return PyLong_FromUnsignedLongLong(shl_writer_next_seq(w->w));
}

static int writer_getbuffer(Writer *w, Py_buffer *view, int flags) {
  return stream_getbuffer(&w->base, view, flags, w->w ? shl_writer_segment(w->w) : NULL);
}

static PyMethodDef writer_methods[] = {
    {"close", (PyCFunction)writer_close, METH_NOARGS,
     "Discard an outstanding loan and give up the writer role; views of loans stay valid."},
    {"loan", (PyCFunction)writer_loan, METH_O,
     "loan(timeout) -> Loan. Blocks with the GIL released; Ctrl-C interrupts."},
    {"publish_copy", (PyCFunction)writer_publish_copy, METH_VARARGS,
     "publish_copy(buffer, timeout, meta=None) -> seq. Copies one frame's bytes (and a metadata "
     "record's) into a slot and publishes."},
    {"meta_format", (PyCFunction)writer_meta_format, METH_NOARGS,
     "The format of each frame's metadata record, or None."},
    {"info", (PyCFunction)writer_info, METH_NOARGS,
     "The stream's slots, readers, writer and last frame."},
    {"set_period", (PyCFunction)writer_set_period, METH_O,
     "set_period(period_ns): the frame period declared to readers (0: unknown)."},
    BASE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef writer_getset[] = {
    BASE_GETSET,
    {"next_seq", (getter)writer_get_next_seq, NULL, "The sequence number the next publish stamps.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, "The writer of a stream. Exports zero frames (for the dtype); frames are loaned."},
    {Py_tp_dealloc, base_dealloc},
    {Py_tp_repr, base_repr},
    {Py_tp_methods, writer_methods},
    {Py_tp_getset, writer_getset},
    {Py_bf_getbuffer, writer_getbuffer},
    {Py_bf_releasebuffer, stream_releasebuffer},
    {0, NULL},
};

PyType_Spec writer_spec = {"shmlane._shmlane.Writer", sizeof(Writer), 0, HANDLE_FLAGS,
                                  writer_slots};

static PyObject *loan_over(Loan *l, PyObject *type) {
  PyErr_Format(type, "the loan on stream '%s' is already %s",
               l->writer ? l->writer->base.name : "?",
               l->state == PUBLISHED ? "published" : "discarded");
  return NULL;
}

/* publish(meta=None) -> the frame's sequence number; wakes the readers. The
 * metadata record's bytes, if given, go with the frame. */
static PyObject *loan_publish(Loan *l, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "publish() takes at most 1 argument (%zd given)", nargs);
    return NULL;
  }
  PyObject *meta = nargs ? args[0] : l->meta ? l->meta : Py_None;
  if (l->state != LOANED) return loan_over(l, PyExc_ValueError);
  if (put_meta(l->writer, meta) < 0) return NULL;
  uint64_t seq;
  int rc = shl_writer_publish(l->writer->w, &seq);
  end_loan(l, PUBLISHED); /* whatever rc: the core has let the slot go */
  if (rc < 0) return stream_failed(&l->writer->base, rc);
  return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *loan_discard(Loan *l, PyObject *unused) {
  (void)unused;
  if (l->state != LOANED) return loan_over(l, PyExc_ValueError);
  shl_writer_discard(l->writer->w);
  end_loan(l, DISCARDED);
  Py_RETURN_NONE;
}

/* arm(owner, view, meta): when the loan ends, `view` (the array made over
 * it) is made read-only and owner.array set to None (both held weakly: no
 * cycle keeps a dropped loan from its discard); `meta` (None: no record) is
 * what publish() with no argument stores. So the caller's object can offer
 * this publish itself, reached with no Python frame on the way. */
static PyObject *loan_arm(Loan *l, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_Format(PyExc_TypeError, "arm() takes 3 arguments (%zd given)", nargs);
    return NULL;
  }
  if (l->state != LOANED) return loan_over(l, PyExc_ValueError);
  PyObject *owner = PyWeakref_NewRef(args[0], NULL), *view = owner ? PyWeakref_NewRef(args[1], NULL) : NULL;
  if (!view) {
    Py_XDECREF(owner);
    return NULL;
  }
  PyObject *old_view = l->view, *old_owner = l->owner, *old_meta = l->meta;
  l->view = view;
  l->owner = owner;
  l->meta = args[2] == Py_None ? NULL : args[2];
  Py_XINCREF(l->meta);
  Py_XDECREF(old_view);
  Py_XDECREF(old_owner);
  Py_XDECREF(old_meta);
  Py_RETURN_NONE;
}

static PyObject *loan_get_state(Loan *l, void *unused) {
  (void)unused;
  static const char *const names[] = {"loaned", "published", "discarded"};
  return PyUnicode_FromString(names[l->state]);
}

/* Buffer protocol: the loaned slot, writable, until published or discarded.
 * Views pin the mapping, not the slot: writing through a view kept past
 * publish() changes a published frame. */
static int loan_getbuffer(Loan *l, Py_buffer *view, int flags) {
  if (l->state != LOANED) {
    loan_over(l, PyExc_BufferError);
    return -1;
  }
  /* The layout of `frames`, which the view pins: it outlives the writer. */
  Base *b = &l->frames->base;
  if (fill_buffer(view, (PyObject *)l, b, &b->layout, l->frame, false, false, flags) < 0)
    return -1;
  l->frames->base.pins++;
  return 0;
}

static void loan_releasebuffer(Loan *l, Py_buffer *view) {
  (void)view;
  unpin_base(&l->frames->base);
}

static void loan_dealloc(Loan *l) {
  PyTypeObject *type = Py_TYPE((PyObject *)l);
  if (l->writer) {
    if (l->state == LOANED) { /* dropped without publishing: the frame is discarded */
      shl_writer_discard(l->writer->w);
      end_loan(l, DISCARDED);
    }
    Py_DECREF(l->writer);
    Py_DECREF(l->frames);
  }
  Py_XDECREF(l->meta);
  Py_XDECREF(l->view);
  Py_XDECREF(l->owner);
  free_object(type, l);
  Py_DECREF(type);
}

static PyMethodDef loan_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))loan_publish, METH_FASTCALL,
     "publish(meta=None) -> seq. Stamps sequence number and time, wakes readers; a metadata "
     "record's bytes, if given, go with the frame."},
    {"discard", (PyCFunction)loan_discard, METH_NOARGS, "Give the slot back unpublished."},
    {"arm", (PyCFunction)(void (*)(void))loan_arm, METH_FASTCALL,
     "arm(owner, view, meta): when the loan ends, view (held weakly) is made read-only and "
     "owner.array (held weakly) set to None; meta is what publish() stores when given none."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef loan_getset[] = {
    {"state", (getter)loan_get_state, NULL, "'loaned', 'published' or 'discarded'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot loan_slots[] = {
    {Py_tp_doc, "A slot loaned by a stream writer; exports the frame writable until published."},
    {Py_tp_dealloc, loan_dealloc},
    {Py_tp_methods, loan_methods},
    {Py_tp_getset, loan_getset},
    {Py_bf_getbuffer, loan_getbuffer},
    {Py_bf_releasebuffer, loan_releasebuffer},
    {0, NULL},
};

PyType_Spec loan_spec = {"shmlane._shmlane.Loan", sizeof(Loan), 0, HANDLE_FLAGS, loan_slots};

/* Maps the writer's stream a second time, for loans (see Writer): the very
 * object the writer holds, from its descriptor. 0, a core code, or PY_ERROR
 * with an exception set. */
static int map_frames(Writer *w, modstate *st) {
  shl_segment *again;
  int rc = shl_dup(&again, shl_writer_segment(w->w));
  if (rc < 0) return rc;
  w->frames = (Handle *)handle_new(st, again);
  return w->frames ? 0 : PY_ERROR;
}

/* A Writer for the core's writer `core` (closed on failure). */
static PyObject *writer_wrap(modstate *st, shl_writer *core, const char *name) {
  Writer *w = PyObject_New(Writer, st->writer_type);
  if (!w) {
    shl_writer_close(core);
    return NULL;
  }
  w->w = core;
  w->loan = NULL;
  w->loaning = false;
  w->frames = NULL;
  int64_t meta_size = shl_writer_get_meta(core, NULL, 0); /* the writer's own copy */
  w->meta_size = meta_size > 0 ? (Py_ssize_t)meta_size : 0;
  int rc = base_init(&w->base, shl_writer_segment(core), "stream writer", writer_drop);
  if (rc == 0) rc = map_frames(w, st);
  if (rc < 0) {
    if (rc != PY_ERROR) set_error(st, rc, name, AT_STREAM_ADOPT);
    Py_DECREF(w);
    return NULL;
  }
  /* The format of `frames`, which outlives the core's writer (replace()). */
  w->base.layout.format = w->frames->base.layout.format;
  return (PyObject *)w;
}

/* The frame layout and stream options of writer_open() and writer_replace()
 * from their arguments after the first: format, shape, slots, max_readers,
 * flags, mode, meta_format[, period_ns]. */
static bool stream_args(PyObject *args, Py_ssize_t first, const char *name, shl_layout *layout,
                        shl_stream_opts *opts) {
  PyObject *rest = PyTuple_GetSlice(args, first, PyTuple_Size(args)), *shape;
  unsigned long long period_ns = 0;
  bool ok = rest && PyArg_ParseTuple(rest, "sO!IIIIz|K:writer_open", &layout->format, &PyTuple_Type,
                                     &shape, &opts->slots, &opts->max_readers, &opts->flags,
                                     &opts->mode, &opts->meta_format, &period_ns) &&
            parse_shape(shape, layout, name) == 0;
  Py_XDECREF(rest); /* the strings stay alive in args */
  opts->period_ns = period_ns;
  return ok;
}

/* writer_open(name, format, shape, slots, max_readers, flags, mode, meta_format,
 * period_ns=0) -> Writer: creates the stream, takes over one of the same
 * layout whose writer is gone, or (flags has STREAM_REPLACE) replaces one of
 * another layout. period_ns: the frame period declared (0: unknown, or at a
 * takeover the stream's as it is). */
PyObject *mod_writer_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  const char *name = PyTuple_Size(args) > 0 ? utf8(PyTuple_GetItem(args, 0)) : NULL;
  shl_layout layout = {0};
  shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
  if (!name) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "writer_open: a name is needed");
    return NULL;
  }
  if (!stream_args(args, 1, name, &layout, &opts)) return NULL;
  shl_writer *core;
  PyThreadState *gil = PyEval_SaveThread(); /* reserving the slots takes a while */
  int rc = shl_writer_open(&core, name, &layout, &opts);
  PyEval_RestoreThread(gil);
  if (rc < 0) return set_error(st, rc, name, AT_STREAM_ADOPT);
  return writer_wrap(st, core, name);
}

/* writer_replace(writer, format, shape, slots, max_readers, flags, mode,
 * meta_format, period_ns=0) -> Writer: the writer's stream replaced by one of
 * this layout (zero slots, max_readers, mode or period_ns: the old stream's);
 * the writer given is closed, the new one writes the new stream. */
PyObject *mod_writer_replace(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  Writer *old = PyTuple_Size(args) > 0 ? (Writer *)PyTuple_GetItem(args, 0) : NULL;
  shl_layout layout = {0};
  shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
  if (!old || !PyObject_TypeCheck((PyObject *)old, st->writer_type)) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "writer_replace: a Writer is needed");
    return NULL;
  }
  if (!stream_args(args, 1, old->base.name, &layout, &opts) || !writer_ready(old)) return NULL;
  /* Loans wait meanwhile, and the handle stays (a close is deferred). The
   * core writer leaves the Writer for the call: a child forked before it
   * returns must not use it, the core closing it on success. */
  shl_writer *core = old->w;
  old->w = NULL;
  old->loaning = true;
  old->base.pins++;
  PyThreadState *gil = PyEval_SaveThread();
  int rc = shl_writer_replace(&core, &layout, &opts);
  PyEval_RestoreThread(gil);
  old->loaning = false;
  if (rc < 0) old->w = core; /* still the old stream's writer */
  unpin_base(&old->base);
  if (rc < 0) return stream_failed(&old->base, rc);
  base_close(&old->base);
  return writer_wrap(st, core, old->base.name);
}
