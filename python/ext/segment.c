/* Handle: an open segment, exported through the buffer protocol, with its
 * lock, wait and notify; and the module functions create() and open(). */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ext.h"

static void handle_drop(Base *b) {
  Handle *h = (Handle *)b;
  shl_close(h->seg); /* the core defers it while a thread of ours holds the lock */
  h->seg = NULL;
  h->locked = false;
}

/* The calling thread holds the lock through h, in this process. */
static bool holds_lock(const Handle *h) {
  return h->locked && h->lock_thread == PyThread_get_thread_ident() && h->lock_pid == getpid();
}

/* The thread of this process that took the lock through h has ended: it
 * can never release it (a kernel thread id reused since counts as running). */
static bool holder_gone(const Handle *h) {
  return h->locked && h->lock_pid == getpid() &&
         syscall(SYS_tgkill, (pid_t)h->lock_pid, (pid_t)h->lock_native, 0) < 0 && errno == ESRCH;
}

/* Forget the lock (unlocked, a parent's across fork, or its holder gone) and its pin. */
static void forget_lock(Handle *h) {
  h->locked = false;
  unpin_base(&h->base);
}

PyObject *handle_new(modstate *st, shl_segment *seg) {
  Handle *h = PyObject_New(Handle, st->handle_type);
  if (!h) {
    shl_close(seg);
    return NULL;
  }
  h->seg = seg;
  h->locked = false;
  h->lock_thread = 0;
  h->lock_pid = 0;
  h->lock_native = 0;
  h->readonly = shl_is_readonly(seg) != 0;
  int rc = base_init(&h->base, seg, "segment", handle_drop);
  if (rc < 0) {
    set_error(st, rc, shl_name(seg), AT_OPEN);
    Py_DECREF(h);
    return NULL;
  }
  return (PyObject *)h;
}

/* Buffer protocol: the payload itself, described by the header's layout. */
static int handle_getbuffer(Handle *h, Py_buffer *view, int flags) {
  if (h->base.closed) {
    PyErr_Format(PyExc_BufferError, "segment '%s' is closed", h->base.name);
    return -1;
  }
  if ((flags & PyBUF_WRITABLE) && h->readonly) {
    PyErr_Format(PyExc_BufferError, "segment '%s' was opened read-only", h->base.name);
    return -1;
  }
  void *payload = shl_payload(h->seg);
  if (!payload) { /* opened to be described only: nothing is mapped */
    PyErr_Format(PyExc_BufferError, "segment '%s' was opened to be described only",
                 h->base.name);
    return -1;
  }
  if (fill_buffer(view, (PyObject *)h, &h->base, &h->base.layout, payload, h->readonly, false,
                  flags) < 0)
    return -1;
  h->base.pins++;
  return 0;
}

static void handle_releasebuffer(Handle *h, Py_buffer *view) {
  (void)view;
  unpin_base(&h->base);
}

static PyObject *handle_close(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) Py_RETURN_NONE;
  /* Deferred unmapping must not keep other processes out of the lock: the
   * caller's own lock is released now. Another thread's stays, with the
   * mapping, until that thread unlocks; a parent's (across fork) is not ours.
   * One that has ended never unlocks: its pin goes, and the core's close
   * (once no view is left) marks the lock its holder's death. */
  h->base.closed = true;
  /* Blocked waits (and locks, within their slice) return now, the mapping
   * kept for the views: the core's close comes with the last pin. */
  shl_shutdown(h->seg);
  if (holds_lock(h)) shl_unlock(h->seg);
  if (h->locked && (holds_lock(h) || h->lock_pid != getpid() || holder_gone(h))) forget_lock(h);
  release_if_done(&h->base);
  Py_RETURN_NONE;
}

static int lock_step(void *seg, int64_t timeout_ns) { return shl_lock(seg, timeout_ns); }

/* The lock taken through a Handle, by one thread. It is given back by
 * release() (or leaving `with`), and when the object goes unreleased in
 * that thread: also when Ctrl-C lands the moment lock() returns it, before
 * the caller has it. */
typedef struct {
  PyObject ob_base;
  Handle *h; /* NULL once released */
  bool recovered;
} Held;

/* lock(timeout) -> Held; held.recovered: the previous holder died holding it. */
static PyObject *handle_lock(Handle *h, PyObject *arg) {
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns)) return NULL;
  if (h->base.closed) return closed_error(&h->base);
  /* Allocated first, so that no failure can leave the lock held. */
  Held *held = PyObject_New(Held, state_of((PyObject *)h)->held_type);
  if (!held) return NULL;
  held->h = NULL;
  int rc = run_blocking(&h->base, lock_step, h->seg, timeout_ns, SLICE_NS, -ETIMEDOUT, -ETIMEDOUT);
  if (h->base.closed) {
    if (rc == 0 || rc == SHL_E_OWNER_DEAD) shl_unlock(h->seg);
    Py_DECREF(held);
    return closed_meanwhile(&h->base);
  }
  if (rc < 0 && rc != SHL_E_OWNER_DEAD) {
    Py_DECREF(held);
    return rc == PY_ERROR ? NULL : set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  }
  if (h->locked && h->lock_pid != getpid()) forget_lock(h); /* the parent's, across fork */
  h->locked = true;
  h->lock_thread = PyThread_get_thread_ident();
  h->lock_pid = getpid();
  h->lock_native = (long)syscall(SYS_gettid);
  h->base.pins++;
  Py_INCREF((PyObject *)h);
  held->h = h;
  held->recovered = rc == SHL_E_OWNER_DEAD;
  return (PyObject *)held;
}

/* shl_unlock, and the lock forgotten if the core gave up its claim: also
 * with -ENOTRECOVERABLE (a peer rewrote the word while it was held). */
static int unlock_and_forget(Handle *h) {
  int rc = shl_unlock(h->seg);
  if (rc == 0 || rc == -ENOTRECOVERABLE) forget_lock(h);
  return rc;
}

/* Only the holding thread unlocks (the core says EPERM to any other). After
 * close(): the holder's unlock completes a deferred close; with the lock
 * already released by close() it is a no-op. */
static PyObject *handle_unlock(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed && !h->locked) Py_RETURN_NONE;
  int rc = unlock_and_forget(h);
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  Py_RETURN_NONE;
}

static PyObject *handle_notify(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  uint64_t v;
  int rc = shl_notify(h->seg, &v);
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  return PyLong_FromUnsignedLongLong(v);
}

struct wait_ctx {
  shl_segment *seg;
  uint64_t since, seen;
  shl_wait_opts opts;
};

static int wait_step(void *ctx, int64_t timeout_ns) {
  struct wait_ctx *w = ctx;
  int rc = shl_wait_ex(w->seg, w->since, timeout_ns, &w->opts, &w->seen);
  w->opts.spin_ns = 0; /* in the first slice only */
  return rc;
}

/* A change count: any integer from 0 to 2**64 - 1 ("K" would take others
 * modulo 2**64). */
static int since_converter(PyObject *obj, void *out) {
  PyObject *index = PyNumber_Index(obj);
  if (!index) return 0;
  unsigned long long v = PyLong_AsUnsignedLongLong(index);
  Py_DECREF(index);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) {
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return 0;
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError, "since must be between 0 and 2**64 - 1, not %R", obj);
    return 0;
  }
  *(unsigned long long *)out = v;
  return 1;
}

/* wait(since, timeout, spin_ns=0) -> the change count seen once it differs from since. */
static PyObject *handle_wait(Handle *h, PyObject *args) {
  unsigned long long since;
  int64_t timeout_ns;
  unsigned int spin_ns = 0;
  if (!PyArg_ParseTuple(args, "O&O&|I:wait", since_converter, &since, timeout_converter,
                        &timeout_ns, &spin_ns))
    return NULL;
  if (h->base.closed) return closed_error(&h->base);
  struct wait_ctx w = {h->seg, since, 0, SHL_WAIT_OPTS_INIT};
  w.opts.flags = SHL_WAIT_INTERRUPTIBLE;
  w.opts.spin_ns = spin_ns;
  /* In one piece (an idle wait makes no wake-up): a signal ends it, and
   * handlers run; a close() from another thread ends it (shl_shutdown). */
  int rc = run_blocking(&h->base, wait_step, &w, timeout_ns, 0, -ETIMEDOUT, -ETIMEDOUT);
  if (h->base.closed) return closed_meanwhile(&h->base);
  if (rc == PY_ERROR) return NULL;
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  return PyLong_FromUnsignedLongLong(w.seen);
}

static PyObject *handle_info(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  shl_info info = SHL_INFO_INIT;
  int rc = shl_get_info(h->seg, &info);
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  return Py_BuildValue("{s:s,s:I,s:I,s:K,s:K,s:K,s:i,s:i,s:K,s:I,s:I}", "name", info.name, "kind",
                       info.kind, "format_version", info.format_version, "total_size",
                       (unsigned long long)info.total_size, "payload_size",
                       (unsigned long long)info.payload_size, "changes",
                       (unsigned long long)info.changes, "creator_pid", (int)info.creator_pid,
                       "creator_alive", info.creator_alive, "created_ns",
                       (unsigned long long)info.created_ns, "mode", info.mode, "uid", info.uid);
}

/* stream_info() -> the stream's counters, for a segment of kind stream. */
static PyObject *handle_stream_info(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  return stream_info(&h->base, h->seg);
}

/* meta_format() -> a stream segment's metadata format, or None. */
static PyObject *handle_meta_format(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  char format[SHL_FORMAT_MAX + 1];
  return stream_meta_format(&h->base, shl_stream_get_meta(h->seg, format, sizeof format), format);
}

static PyObject *handle_get_changes(Handle *h, void *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  return PyLong_FromUnsignedLongLong(shl_changes(h->seg));
}

static PyObject *handle_get_readonly(Handle *h, void *unused) {
  (void)unused;
  return PyBool_FromLong(h->readonly);
}

static PyObject *handle_get_nbytes(Handle *h, void *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  return PyLong_FromUnsignedLongLong(shl_payload_size(h->seg));
}

static PyMethodDef handle_methods[] = {
    {"close", (PyCFunction)handle_close, METH_NOARGS,
     "Detach; the mapping goes when the last exported buffer is released."},
    {"lock", (PyCFunction)handle_lock, METH_O,
     "lock(timeout) -> recovered. Blocks with the GIL released; Ctrl-C interrupts."},
    {"unlock", (PyCFunction)handle_unlock, METH_NOARGS, "Release the lock."},
    {"notify", (PyCFunction)handle_notify, METH_NOARGS, "Bump the change counter, wake waiters."},
    {"wait", (PyCFunction)handle_wait, METH_VARARGS,
     "wait(since, timeout) -> changes. Blocks with the GIL released; Ctrl-C interrupts."},
    {"info", (PyCFunction)handle_info, METH_NOARGS, "The header's bookkeeping fields."},
    {"stream_info", (PyCFunction)handle_stream_info, METH_NOARGS,
     "A stream segment's slots, readers, writer and last frame."},
    {"meta_format", (PyCFunction)handle_meta_format, METH_NOARGS,
     "A stream segment's metadata format, or None without metadata."},
    BASE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    BASE_GETSET,
    {"readonly", (getter)handle_get_readonly, NULL, "Payload mapped read-only.", NULL},
    {"nbytes", (getter)handle_get_nbytes, NULL, "Payload size in bytes.", NULL},
    {"changes", (getter)handle_get_changes, NULL, "The change counter: notify() calls so far.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "An open shmlane segment; exports its payload through the buffer protocol."},
    {Py_tp_dealloc, base_dealloc},
    {Py_tp_repr, base_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_bf_getbuffer, handle_getbuffer},
    {Py_bf_releasebuffer, handle_releasebuffer},
    {0, NULL},
};

PyType_Spec handle_spec = {"shmlane._shmlane.Handle", sizeof(Handle), 0, HANDLE_FLAGS,
                                  handle_slots};

/* release(): only the thread that took it may (PermissionError); a no-op
 * once released, also by this thread's close(). */
static PyObject *held_release(Held *l, PyObject *unused) {
  (void)unused;
  if (!l->h) Py_RETURN_NONE;
  PyObject *done = handle_unlock(l->h, NULL);
  if (done || !l->h->locked) Py_CLEAR(l->h); /* released, or given up with an error */
  return done;
}

static PyObject *held_enter(Held *l, PyObject *unused) {
  (void)unused;
  Py_INCREF((PyObject *)l);
  return (PyObject *)l;
}

static PyObject *held_exit(Held *l, PyObject *args) {
  (void)args;
  return held_release(l, NULL);
}

static void held_dealloc(Held *l) {
  PyTypeObject *type = Py_TYPE((PyObject *)l);
  Handle *h = l->h;
  /* Dropped unreleased by its thread: given back. Another thread cannot
   * (the core says EPERM); nor can a forked child, whose lock it is not. */
  if (h && holds_lock(h)) (void)unlock_and_forget(h);
  Py_XDECREF((PyObject *)h);
  free_object(type, l);
  Py_DECREF(type);
}

static PyObject *held_get_recovered(Held *l, void *unused) {
  (void)unused;
  return PyBool_FromLong(l->recovered);
}

static PyMethodDef held_methods[] = {
    {"release", (PyCFunction)held_release, METH_NOARGS,
     "Release the lock (idempotent); only the thread that took it may."},
    {"__enter__", (PyCFunction)held_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)held_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef held_getset[] = {
    {"recovered", (getter)held_get_recovered, NULL,
     "The previous holder died holding the lock: the data it guards may be half-written.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot held_slots[] = {
    {Py_tp_doc,
     "The segment's lock, held by this thread. Leaving the `with` block or calling release() "
     "releases it; only the thread that took it may, and it is released too when the object "
     "goes unreleased in that thread. While it is held, the segment stays mapped even if "
     "another thread closes it: that close completes at the release."},
    {Py_tp_dealloc, held_dealloc},
    {Py_tp_methods, held_methods},
    {Py_tp_getset, held_getset},
    {0, NULL},
};

PyType_Spec held_spec = {"shmlane._shmlane.Held", sizeof(Held), 0, HANDLE_FLAGS, held_slots};

/* create(name, format, shape, mode, flags) -> Handle */
PyObject *mod_create(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  const char *name, *format;
  PyObject *shape;
  unsigned mode, flags;
  if (!PyArg_ParseTuple(args, "ssO!II:create", &name, &format, &PyTuple_Type, &shape, &mode,
                        &flags))
    return NULL;
  shl_layout layout = {.format = format};
  if (parse_shape(shape, &layout, name) < 0) return NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .mode = mode, .flags = flags};
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
  shl_open_opts opts;
  int rc; /* of the last try */
};

/* A name not there yet (when waited for) and a creator still initialising
 * both mean: try again in the next slice. */
static int open_step(void *ctx, int64_t timeout_ns) {
  struct open_ctx *o = ctx;
  o->opts.timeout_ns = timeout_ns;
  o->rc = shl_open_ex(&o->seg, o->name, &o->opts);
  return o->rc == -ENOENT && (o->opts.flags & SHL_OPEN_WAIT_NAME) ? SHL_E_NOT_READY : o->rc;
}

/* open(name, readonly, timeout, owner=0, owner_uid=0, wait_name=False,
 * describe=False) -> Handle. Waits for a creator still initialising (while
 * it lives), and with wait_name for the name to appear. owner:
 * shl_owner_policy. describe: SHL_OPEN_DESCRIBE (read, never mapped; no buffer). */
PyObject *mod_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  struct open_ctx o = {NULL, NULL, SHL_OPEN_OPTS_INIT, 0};
  int readonly, wait_name = 0, describe = 0;
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "spO&|IIpp:open", &o.name, &readonly, timeout_converter,
                        &timeout_ns, &o.opts.owner, &o.opts.owner_uid, &wait_name, &describe))
    return NULL;
  o.opts.flags = (readonly ? SHL_OPEN_READONLY : 0) | (wait_name ? SHL_OPEN_WAIT_NAME : 0) |
                 (describe ? SHL_OPEN_DESCRIBE : 0);
  int rc =
      run_blocking(NULL, open_step, &o, timeout_ns, SLICE_NS, SHL_E_NOT_READY, SHL_E_NOT_READY);
  if (rc == PY_ERROR) return NULL;
  if (rc == SHL_E_NOT_READY) rc = o.rc; /* at the end: not there, or still being created */
  if (rc < 0)
    return set_error(st, rc, o.name, o.opts.owner == SHL_OWNER_CREATOR ? AT_ADOPT : AT_OPEN);
  return handle_new(st, o.seg);
}

