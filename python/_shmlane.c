/* _shmlane: the C core's public API for Python. This file only converts
 * arguments, calls the core with the GIL released where it may block, keeps
 * Ctrl-C working, exports shared memory through the buffer protocol and maps
 * error codes to exceptions; everything else lives in the pure-Python
 * package (python/shmlane/). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <pwd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmlane.h"

/* Longest stretch a Ctrl-C waits during calls that signals do not interrupt
 * (the robust mutex, the open retry loop, a loan), and a release asked for
 * by another thread waits during a receive. */
#define SLICE_NS 50000000LL
/* run_blocking()'s result when a Python exception is set; no core code is this. */
#define PY_ERROR INT_MIN
/* loan_slot()'s result when another thread closed the writer meanwhile. */
#define CLOSED_MEANWHILE (INT_MIN + 1)
/* The core caps a wait's spin at 1 ms (shl_wait_opts). */
#define SPIN_MAX_NS 1000000

typedef struct {
  PyTypeObject *handle_type, *writer_type, *reader_type, *loan_type, *sample_type;
  PyObject *error;       /* shmlane.Error */
  PyObject *corrupt;     /* shmlane.CorruptSegment(Error) */
  PyObject *mismatch;    /* shmlane.LayoutMismatch(Error, ValueError) */
  PyObject *recovered;   /* shmlane.LockRecovered(Warning): warned by the Python layer */
  PyObject *writer_gone; /* shmlane.WriterGone(Error) */
  PyObject *busy;        /* shmlane.StreamBusy(Error, OSError) */
} modstate;

/* A payload or one frame, as the buffer protocol describes it. shape[0] is
 * 0 and strides[0] the frame's size: shape + 1 describes the data itself,
 * shape the same data as an array of zero frames (a stream's "probe", from
 * which NumPy parses the frame's format once, without touching any slot). */
typedef struct {
  int ndim;           /* of the data, without the leading zero */
  const char *format; /* the header's element format, owned by the segment */
  Py_ssize_t itemsize, len;
  Py_ssize_t shape[1 + SHL_MAX_NDIM], strides[1 + SHL_MAX_NDIM];
  bool c_contiguous, f_contiguous;
} Layout;

/* The head shared by the three handle types: Handle (a segment), Writer and
 * Reader (a stream). The core object must outlive every buffer exported from
 * it, every sample pinned through it and every call running without the GIL:
 * `pins` counts them all, and close() only marks the object closed; `drop`
 * frees the core object (and unmaps) when the last pin goes. All fields are
 * touched only with the GIL held. */
typedef struct Base Base;
struct Base {
  PyObject ob_base;         /* PyObject_HEAD, spelled out for clang-format */
  void (*drop)(Base *self); /* frees the core object; idempotent */
  void (*idle)(Base *self); /* optional: work deferred while a call ran without the GIL */
  const char *what;         /* "segment", "stream writer", "stream reader" */
  bool closed;
  long pid; /* of the process that opened it: another one inherited it by fork() */
  Py_ssize_t pins;
  int running; /* calls in progress without the GIL */
  uint32_t kind;
  Layout layout;
  char name[SHL_NAME_MAX + 1];
};

/* While a thread holds the lock through it, a Handle is pinned like an
 * exported view: close() from another thread is deferred until that thread
 * unlocks, because the core must never unmap a mutex under its holder. */
typedef struct {
  Base base;
  shl_segment *seg;          /* NULL once released */
  bool locked;               /* a thread holds the segment's lock through this handle (a pin) */
  unsigned long lock_thread; /* which thread (PyThread ident) */
  long lock_pid;             /* in which process: a forked child's copy is not its holder */
  bool readonly;
} Handle;

typedef struct Loan Loan;

/* Loans are exported through a second mapping of the stream, `frames`, so
 * that close() gives up the writer role at once, however long views of a
 * loan live: they pin `frames`, not the writer. */
typedef struct {
  Base base;
  shl_writer *w;  /* NULL once released */
  Handle *frames; /* NULL once released */
  Loan *loan;     /* the outstanding loan (borrowed: the loan refers to us), or NULL */
  bool loaning;   /* a loan() call is in progress */
} Writer;

/* The core's reader is single-threaded, so a sample released while another
 * thread is inside receive (without the GIL) is queued here, and released by
 * that thread between slices of its wait. A reader holds at most one sample
 * per slot (a pinned slot is never rewritten), so a slot-indexed table holds
 * every queued sample. */
typedef struct {
  Base base;
  shl_reader *r;  /* NULL once released */
  bool receiving; /* a receive() call is in progress */
  uint32_t held;  /* samples pinned */
  uint32_t spin_ns;
  uint64_t deferred_mask;
  shl_sample deferred[SHL_STREAM_MAX_SLOTS];
} Reader;

enum loan_state { LOANED, PUBLISHED, DISCARDED };

/* A slot loaned by a writer: exported writable until published or discarded. */
struct Loan {
  PyObject ob_base;
  Writer *writer; /* NULL if the loan never started */
  Handle *frames; /* the writer's, which views pin */
  void *frame;    /* in `frames` */
  enum loan_state state;
};

/* A published frame pinned by a reader: exported read-only. The pin is given
 * back once release() was called (or the sample is gone) and no exported view
 * remains, so a view kept past release never sees its slot rewritten. */
typedef struct {
  PyObject ob_base;
  Reader *reader; /* NULL if nothing was received */
  shl_sample s;
  bool pinned, released;
  Py_ssize_t exports;
} Sample;

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static modstate *state_of(PyObject *obj) { return PyType_GetModuleState(Py_TYPE(obj)); }

/* ---------------------------------------------------------------- errors */

/* AT_ADOPT: opening an existing segment in place of creating it;
 * AT_STREAM_ADOPT: a writer creating a stream or taking one over. */
enum err_context { AT_CREATE, AT_ADOPT, AT_OPEN, AT_USE, AT_STREAM_OPEN, AT_STREAM_ADOPT, AT_STREAM };

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

/* An OSError with its own message (naming the segment too); steals `text`.
 * `filename` is the name, as for every other OSError raised here. */
static void set_oserror_text(PyObject *type, int err, PyObject *text, const char *name) {
  if (!text) return;
  PyObject *exc = PyObject_CallFunction(type, "iNs", err, text, name);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
}

/* Where a segment's POSIX object appears as a file (best effort: messages). */
static const char *object_path(const char *name, char *buf, size_t size) {
  snprintf(buf, size, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  return buf;
}

/* "nobody (uid 65534)", or "uid 65534" for a uid without a name. */
static void user_text(uid_t uid, char *buf, size_t size, const char **user) {
  struct passwd *pw = getpwuid(uid);
  *user = pw ? pw->pw_name : NULL;
  if (pw) snprintf(buf, size, "%s (uid %u)", pw->pw_name, (unsigned)uid);
  else snprintf(buf, size, "uid %u", (unsigned)uid);
}

static void set_foreign_owner(const char *name, const char *noun, enum err_context where) {
  char path[64], who[96], msg[512];
  const char *user = NULL;
  struct stat st;
  if (lstat(object_path(name, path, sizeof path), &st) == 0) {
    user_text(st.st_uid, who, sizeof who, &user);
  } else {
    snprintf(who, sizeof who, "another user");
  }
  if (where == AT_ADOPT || where == AT_STREAM_ADOPT) {
    snprintf(msg, sizeof msg,
             "%s '%s' exists and is owned by %s, not by you: %s never adopts another user's %s "
             "(pick another name, or have its owner remove it)",
             noun, name, who, where == AT_ADOPT ? "creating" : "a writer", noun);
  } else if (user) {
    snprintf(msg, sizeof msg,
             "%s '%s' is owned by %s, not by you or root; pass owner='%s' or owner='any' to "
             "open it anyway",
             noun, name, who, user);
  } else {
    snprintf(msg, sizeof msg,
             "%s '%s' is owned by %s, not by you or root; pass owner=%u or owner='any' to "
             "open it anyway",
             noun, name, who, (unsigned)st.st_uid);
  }
  set_oserror_text(PyExc_PermissionError, EACCES, PyUnicode_FromString(msg), name);
}

/* The pid an initialising creator wrote into the header (docs/format.md:
 * creator_pid, offset 72), or 0. */
static long creator_pid_of(const char *name) {
  char path[64];
  int32_t pid = 0;
  int fd = open(object_path(name, path, sizeof path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  if (pread(fd, &pid, sizeof pid, 72) != (ssize_t)sizeof pid) pid = 0;
  close(fd);
  return pid > 0 ? pid : 0;
}

/* What a non-regular file at a segment's name is, or NULL for a regular file. */
static const char *planted(const char *name, char *path, size_t size) {
  struct stat st;
  if (lstat(object_path(name, path, size), &st) != 0) return NULL;
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISLNK(st.st_mode)) return "a symbolic link";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  return NULL;
}

/* The errors only opening a stream gives; false if rc is not one of them. */
static bool set_stream_open_error(modstate *st, int rc, const char *name) {
  switch (rc) {
    case -EBUSY: set_oserror(st->busy, EBUSY, "a live writer holds the stream", name); return true;
    case -EUSERS:
      set_oserror(st->busy, EUSERS, "the stream's reader table is full (see max_readers)", name);
      return true;
    case -EINVAL:
      PyErr_Format(st->mismatch,
                   "stream '%s' exists with another frame layout or slot count "
                   "(shmlane.unlink('%s') removes it)",
                   name, name);
      return true;
    case SHL_E_BAD_KIND:
      PyErr_Format(st->mismatch, "segment '%s' is not a stream", name);
      return true;
    default: return false;
  }
}

/* WriterGone, with `reason` "closed" (a clean close) or "died". */
static void set_writer_gone(modstate *st, int rc, const char *name) {
  const char *reason = rc == SHL_E_WRITER_CLOSED ? "closed" : "died";
  PyObject *exc = PyObject_CallFunction(
      st->writer_gone, "N",
      PyUnicode_FromFormat("stream '%s': every frame is received, and its writer %s with no "
                           "other taking over",
                           name, rc == SHL_E_WRITER_CLOSED ? "closed it" : "died"));
  PyObject *why = exc ? PyUnicode_FromString(reason) : NULL;
  if (why && PyObject_SetAttrString(exc, "reason", why) == 0)
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_XDECREF(why);
  Py_XDECREF(exc);
}

/* Raises the exception for core code rc about segment or stream `name`;
 * returns NULL. */
static PyObject *set_error(modstate *st, int rc, const char *name, enum err_context where) {
  const char *text = shl_strerror(rc);
  const char *noun = where >= AT_STREAM_OPEN ? "stream" : "segment";
  if ((where == AT_STREAM_OPEN || where == AT_STREAM_ADOPT) && set_stream_open_error(st, rc, name))
    return NULL;
  char path[64];
  const char *what = rc == SHL_E_NOT_SHMLANE || rc == -EEXIST ? planted(name, path, sizeof path)
                                                              : NULL;
  if (what) {
    /* Something else sits at the name: say what, not "bad magic" or "exists". */
    PyErr_Format(rc == -EEXIST ? PyExc_FileExistsError : st->corrupt,
                 "'%s' is %s, not a shmlane %s", path, what, noun);
  } else if (rc == SHL_E_FOREIGN_OWNER) {
    set_foreign_owner(name, noun, where);
  } else if (rc == SHL_E_CREATOR_DEAD || rc == SHL_E_NOT_READY) {
    char creator[48] = "its creator";
    long pid = creator_pid_of(name);
    if (pid) snprintf(creator, sizeof creator, "its creator (pid %ld)", pid);
    if (rc == SHL_E_NOT_READY) {
      set_oserror_text(PyExc_TimeoutError, ETIMEDOUT,
                       PyUnicode_FromFormat("%s '%s' is still being initialised by %s", noun,
                                            name, creator), name);
    } else {
      PyErr_Format(st->corrupt,
                   "%s '%s': %s died before the %s was ready; remove it with "
                   "`shmlane rm %s` (or `shmlane gc`)",
                   noun, name, creator, noun, name);
    }
  } else if (rc == SHL_E_READONLY) {
    set_oserror(PyExc_PermissionError, EACCES, text, name);
  } else if (rc > -4096 && rc < 0) {
    /* OSError picks FileNotFoundError, PermissionError, TimeoutError, ... */
    set_oserror(PyExc_OSError, -rc, rc == -ETIMEDOUT ? "timed out" : text, name);
  } else if (rc == SHL_E_BAD_NAME) {
    PyErr_Format(PyExc_ValueError,
                 "invalid segment name '%s': 1 to %d characters from "
                 "[A-Za-z0-9._-], starting with a letter or digit",
                 name, SHL_NAME_MAX);
  } else if (rc == SHL_E_WRITER_GONE || rc == SHL_E_WRITER_CLOSED) {
    set_writer_gone(st, rc, name);
  } else if (is_header_error(rc)) {
    /* At create the caller's layout is at fault; later, the header in memory is. */
    PyErr_Format(where == AT_CREATE ? PyExc_ValueError : st->corrupt, "%s '%s': %s (%s)", noun,
                 name, text, shl_err_name(rc));
  } else {
    PyErr_Format(st->error, "%s '%s': %s (%s)", noun, name, text, shl_err_name(rc));
  }
  return NULL;
}

static PyObject *closed_error(const Base *b) {
  PyErr_Format(PyExc_ValueError, "%s '%s' is closed", b->what, b->name);
  return NULL;
}

/* ---------------------------------------------------------------- handles: shared */

static void release_if_done(Base *b) {
  if (b->closed && b->pins == 0) b->drop(b);
}

static void base_close(Base *b) {
  b->closed = true;
  release_if_done(b);
}

/* After a blocking call during which another thread closed the object. */
static PyObject *closed_meanwhile(Base *b) {
  release_if_done(b);
  return closed_error(b);
}

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

typedef int (*step_fn)(void *ctx, int64_t timeout_ns);

/* Calls step() with the GIL released until it returns something other than
 * `again` or -EINTR, or the time is up (then returns `expired`). With
 * slice_ns > 0 each call gets at most that long, for calls that signals do
 * not interrupt. Between calls, signal handlers run: an exception from one
 * (Ctrl-C) ends the loop with PY_ERROR; otherwise the wait goes on with the
 * time left. `pin` (NULL when there is no object yet) stays alive during
 * each call, and its idle hook runs after it; if another thread closes it
 * meanwhile, the loop ends with the last result and the caller must check
 * pin->closed. */
static int run_blocking(Base *pin, step_fn step, void *ctx, int64_t timeout_ns, int64_t slice_ns,
                        int again, int expired) {
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : monotonic_ns() + timeout_ns;
  for (bool first = true;; first = false) {
    int64_t left = timeout_ns < 0 ? -1 : deadline - monotonic_ns();
    if (timeout_ns >= 0 && left <= 0) {
      if (!first) return expired;
      left = 0;
    }
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

/* Fills the head shared by all handles from seg's layout (of its payload, or
 * of one frame for a stream). SHL_E_BAD_SHAPE if it does not fit Py_ssize_t. */
static int base_init(Base *b, const shl_segment *seg, const char *what, void (*drop)(Base *)) {
  b->drop = drop; /* first: dealloc drops the core object on any failure below */
  b->idle = NULL;
  b->what = what;
  b->closed = false;
  b->pid = (long)getpid();
  b->pins = 0;
  b->running = 0;
  b->kind = shl_kind(seg);
  snprintf(b->name, sizeof b->name, "%s", shl_name(seg));
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
  Layout *l = &b->layout;
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

/* Fills `view` with buf as b's layout describes it (probe: as zero frames)
 * for `exporter`, which the view keeps alive; the caller has checked a
 * writable request and counts the export. */
static int fill_buffer(Py_buffer *view, PyObject *exporter, const Base *b, void *buf, bool readonly,
                       bool probe, int flags) {
  const Layout *l = &b->layout;
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

static void base_dealloc(Base *b) {
  PyTypeObject *type = Py_TYPE(b);
  /* Exports, samples and calls hold references; only a lock whose Held was
   * dropped unreleased may still pin: the core's close then waits for its holder. */
  b->drop(b);
  type->tp_free(b);
  Py_DECREF(type);
}

static PyObject *base_repr(Base *b) {
  return PyUnicode_FromFormat("<%s '%s'%s>", Py_TYPE(b)->tp_name, b->name,
                              b->closed ? " closed" : "");
}

static PyObject *base_layout(Base *b, PyObject *unused) {
  (void)unused;
  if (b->closed) return closed_error(b);
  const Layout *l = &b->layout;
  PyObject *shape = PyTuple_New(l->ndim), *strides = PyTuple_New(l->ndim);
  if (!shape || !strides) goto fail;
  for (int i = 0; i < l->ndim; i++) {
    PyObject *dim = PyLong_FromSsize_t(l->shape[1 + i]);
    PyObject *stride = PyLong_FromSsize_t(l->strides[1 + i]);
    if (dim) PyTuple_SET_ITEM(shape, i, dim);
    if (stride) PyTuple_SET_ITEM(strides, i, stride);
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

static PyObject *stream_info(Base *b, const shl_segment *seg) {
  shl_stream_info s;
  int rc = shl_stream_get_info(seg, &s);
  if (rc < 0) return set_error(state_of((PyObject *)b), rc, b->name, AT_STREAM);
  return Py_BuildValue("{s:I,s:I,s:O,s:I,s:i,s:i,s:K,s:K,s:K}", "slots", s.slots, "max_readers",
                       s.max_readers, "block", s.flags & SHL_STREAM_BLOCK ? Py_True : Py_False,
                       "readers_alive", s.readers_alive, "writer_pid", (int)s.writer_pid,
                       "writer_alive", s.writer_alive, "last_seq", (unsigned long long)s.last_seq,
                       "last_timestamp_ns", (unsigned long long)s.last_timestamp_ns, "slot_stride",
                       (unsigned long long)s.slot_stride);
}

static PyObject *base_get_name(Base *b, void *unused) {
  (void)unused;
  return PyUnicode_FromString(b->name);
}

static PyObject *base_get_closed(Base *b, void *unused) {
  (void)unused;
  return PyBool_FromLong(b->closed);
}

/* Entries every handle type's method and attribute tables start with. */
// clang-format off
#define BASE_METHODS                                                                       \
  {"layout", (PyCFunction)base_layout, METH_NOARGS,                                        \
   "The header's layout (of one frame for a stream): format, itemsize, shape, strides, "   \
   "kind, c_contiguous."}
#define BASE_GETSET                                                                        \
  {"name", (getter)base_get_name, NULL, "Segment name.", NULL},                            \
  {"closed", (getter)base_get_closed, NULL, "True after close().", NULL}
// clang-format on

/* Handles come only from the module's functions. */
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define HANDLE_FLAGS \
  (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE)
#else /* Python 3.9: add_type() clears tp_new instead */
#define HANDLE_FLAGS Py_TPFLAGS_DEFAULT
#endif

/* ---------------------------------------------------------------- Handle: a segment */

static void unpin_base(Base *b);

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

/* Forget the lock (unlocked, or a parent's across fork) and its pin. */
static void forget_lock(Handle *h) {
  h->locked = false;
  unpin_base(&h->base);
}

/* Wraps seg (taking ownership) in a new Handle. */
static PyObject *handle_new(modstate *st, shl_segment *seg) {
  Handle *h = PyObject_New(Handle, st->handle_type);
  if (!h) {
    shl_close(seg);
    return NULL;
  }
  h->seg = seg;
  h->locked = false;
  h->lock_thread = 0;
  h->lock_pid = 0;
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
  if (fill_buffer(view, (PyObject *)h, &h->base, shl_payload(h->seg), h->readonly, false, flags) <
      0)
    return -1;
  h->base.pins++;
  return 0;
}

/* Shared by every exporter whose views pin a handle. */
static void unpin_base(Base *b) {
  b->pins--;
  release_if_done(b);
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
   * mapping, until that thread unlocks; a parent's (across fork) is not ours. */
  h->base.closed = true;
  if (holds_lock(h)) shl_unlock(h->seg);
  if (h->locked && (holds_lock(h) || h->lock_pid != getpid())) forget_lock(h);
  release_if_done(&h->base);
  Py_RETURN_NONE;
}

static int lock_step(void *seg, int64_t timeout_ns) { return shl_lock(seg, timeout_ns); }

/* lock(timeout) -> recovered: True when the previous holder died holding it. */
static PyObject *handle_lock(Handle *h, PyObject *arg) {
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns)) return NULL;
  if (h->base.closed) return closed_error(&h->base);
  int rc = run_blocking(&h->base, lock_step, h->seg, timeout_ns, SLICE_NS, -ETIMEDOUT, -ETIMEDOUT);
  if (h->base.closed) {
    if (rc == 0 || rc == SHL_E_OWNER_DEAD) shl_unlock(h->seg);
    return closed_meanwhile(&h->base);
  }
  if (rc == PY_ERROR) return NULL;
  if (rc < 0 && rc != SHL_E_OWNER_DEAD)
    return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  if (h->locked && h->lock_pid != getpid()) forget_lock(h); /* the parent's, across fork */
  h->locked = true;
  h->lock_thread = PyThread_get_thread_ident();
  h->lock_pid = getpid();
  h->base.pins++;
  return PyBool_FromLong(rc == SHL_E_OWNER_DEAD);
}

/* Only the holding thread unlocks (the core says EPERM to any other). After
 * close(): the holder's unlock completes a deferred close; with the lock
 * already released by close() it is a no-op. */
static PyObject *handle_unlock(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed && !h->locked) Py_RETURN_NONE;
  int rc = shl_unlock(h->seg);
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  forget_lock(h);
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
  return shl_wait_ex(w->seg, w->since, timeout_ns, &w->opts, &w->seen);
}

/* wait(since, timeout, spin_ns=0) -> the version seen once it differs from since. */
static PyObject *handle_wait(Handle *h, PyObject *args) {
  unsigned long long since;
  int64_t timeout_ns;
  unsigned int spin_ns = 0;
  if (!PyArg_ParseTuple(args, "KO&|I:wait", &since, timeout_converter, &timeout_ns, &spin_ns))
    return NULL;
  if (h->base.closed) return closed_error(&h->base);
  struct wait_ctx w = {h->seg, since, 0, {SHL_WAIT_INTERRUPTIBLE, spin_ns}};
  int rc = run_blocking(&h->base, wait_step, &w, timeout_ns, 0, -EINTR, -ETIMEDOUT);
  if (h->base.closed) return closed_meanwhile(&h->base);
  if (rc == PY_ERROR) return NULL;
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  return PyLong_FromUnsignedLongLong(w.seen);
}

static PyObject *handle_info(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  shl_info info;
  int rc = shl_get_info(h->seg, &info);
  if (rc < 0) return set_error(state_of((PyObject *)h), rc, h->base.name, AT_USE);
  return Py_BuildValue("{s:s,s:I,s:I,s:K,s:K,s:K,s:i,s:i,s:K,s:I,s:I}", "name", info.name, "kind",
                       info.kind, "format_version", info.format_version, "total_size",
                       (unsigned long long)info.total_size, "payload_size",
                       (unsigned long long)info.payload_size, "version",
                       (unsigned long long)info.version, "creator_pid", (int)info.creator_pid,
                       "creator_alive", info.creator_alive, "created_ns",
                       (unsigned long long)info.created_ns, "mode", info.mode, "uid", info.uid);
}

/* stream_info() -> the stream's counters, for a segment of kind stream. */
static PyObject *handle_stream_info(Handle *h, PyObject *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  return stream_info(&h->base, h->seg);
}

static PyObject *handle_get_version(Handle *h, void *unused) {
  (void)unused;
  if (h->base.closed) return closed_error(&h->base);
  return PyLong_FromUnsignedLongLong(shl_version(h->seg));
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
    {"notify", (PyCFunction)handle_notify, METH_NOARGS, "Bump the version, wake waiters."},
    {"wait", (PyCFunction)handle_wait, METH_VARARGS,
     "wait(since, timeout) -> version. Blocks with the GIL released; Ctrl-C interrupts."},
    {"info", (PyCFunction)handle_info, METH_NOARGS, "The header's bookkeeping fields."},
    {"stream_info", (PyCFunction)handle_stream_info, METH_NOARGS,
     "A stream segment's slots, readers, writer and last frame."},
    BASE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    BASE_GETSET,
    {"readonly", (getter)handle_get_readonly, NULL, "Payload mapped read-only.", NULL},
    {"nbytes", (getter)handle_get_nbytes, NULL, "Payload size in bytes.", NULL},
    {"version", (getter)handle_get_version, NULL, "Current change counter.", NULL},
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

static PyType_Spec handle_spec = {"shmlane._shmlane.Handle", sizeof(Handle), 0, HANDLE_FLAGS,
                                  handle_slots};

/* ---------------------------------------------------------------- streams: shared */

/* The probe: zero frames of the stream's frame layout, read-only, from which
 * NumPy learns the frame's dtype without touching any slot. */
static int stream_getbuffer(Base *b, Py_buffer *view, int flags, const shl_segment *seg) {
  if (b->closed) {
    PyErr_Format(PyExc_BufferError, "%s '%s' is closed", b->what, b->name);
    return -1;
  }
  if (flags & PyBUF_WRITABLE) {
    PyErr_Format(PyExc_BufferError, "%s '%s' exports no frame data", b->what, b->name);
    return -1;
  }
  if (fill_buffer(view, (PyObject *)b, b, shl_payload(seg), true, true, flags) < 0) return -1;
  b->pins++;
  return 0;
}

static void stream_releasebuffer(Base *b, Py_buffer *view) {
  (void)view;
  unpin_base(b);
}

/* TimeoutError naming the pids of the readers that pin every slot. */
static PyObject *slots_pinned(Writer *w) {
  int32_t pids[8];
  int n = shl_writer_pinned_by(w->w, pids, 8);
  char list[128] = "";
  size_t len = 0;
  for (int i = 0; i < n && i < 8 && len < sizeof list; i++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", i ? ", " : "", (int)pids[i]);
  if (n > 8 && len < sizeof list) snprintf(list + len, sizeof list - len, ", ...");
  char text[256];
  snprintf(text, sizeof text,
           "no free slot: readers pin every slot the writer could reuse (reader pids: %s); "
           "they must release their samples",
           n > 0 ? list : "none left");
  set_oserror(PyExc_TimeoutError, ETIMEDOUT, text, w->base.name);
  return NULL;
}

/* A stream call that failed, or found its handle closed by another thread
 * meanwhile: the Python error to raise. */
static PyObject *stream_failed(Base *b, int rc) {
  if (b->closed) return closed_meanwhile(b);
  if (rc == PY_ERROR) return NULL;
  modstate *st = state_of((PyObject *)b);
  if (rc == SHL_E_FORKED)
    return PyErr_Format(st->error,
                        "%s of '%s' was opened in process %ld before fork(): open it again in "
                        "this process",
                        strrchr(Py_TYPE(b)->tp_name, '.') + 1, b->name, b->pid);
  if (rc == SHL_E_PIN_LIMIT && Py_TYPE(b) == st->reader_type)
    return PyErr_Format(st->error,
                        "reader of '%s' holds %u samples (its max_pinned): release them (del "
                        "the arrays, sample.release(), or copy what you keep) before receiving "
                        "more",
                        b->name, ((Reader *)b)->held);
  if (rc == SHL_E_SLOTS_PINNED && Py_TYPE(b) == st->writer_type) return slots_pinned((Writer *)b);
  return set_error(st, rc, b->name, AT_STREAM);
}

/* ---------------------------------------------------------------- Writer and Loan */

static void writer_drop(Base *b) {
  Writer *w = (Writer *)b;
  shl_writer_close(w->w); /* gives up the writer role; the stream stays */
  w->w = NULL;
  if (w->frames) base_close(&w->frames->base); /* unmapped after the last view of a loan */
  Py_CLEAR(w->frames);
}

/* The outstanding loan is over: the writer may loan again. */
static void end_loan(Loan *l, enum loan_state state) {
  l->state = state;
  l->writer->loan = NULL;
}

static PyObject *writer_close(Writer *w, PyObject *unused) {
  (void)unused;
  if (w->base.closed) Py_RETURN_NONE;
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

/* false (error set) unless w may loan a slot now. */
static bool writer_ready(Writer *w) {
  if (w->base.closed) return closed_error(&w->base), false;
  if (w->loan || w->loaning) {
    PyErr_Format(PyExc_RuntimeError,
                 "stream '%s': a loan is already outstanding; publish or discard it first",
                 w->base.name);
    return false;
  }
  return true;
}

/* A slot for loan() and publish_copy(), in the core's mapping. Waits (GIL
 * released, Ctrl-C works) only while readers pin every free slot, or for
 * `all` readers on a blocking stream: most loans find a slot at once, with
 * no GIL hand-off. The core's result, PY_ERROR, or CLOSED_MEANWHILE (another
 * thread closed the writer; the slot, if any, is given back). */
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
  void *frame;
  int rc = loan_slot(w, timeout_ns, &frame);
  if (rc < 0) {
    Py_DECREF(l);
    return stream_failed(&w->base, rc);
  }
  Py_INCREF(w);
  l->writer = w;
  Py_INCREF(w->frames);
  l->frames = w->frames;
  /* The same slot in the second mapping. */
  l->frame = (char *)shl_payload(w->frames->seg) +
             ((char *)frame - (char *)shl_payload(shl_writer_segment(w->w)));
  l->state = LOANED;
  w->loan = l;
  return (PyObject *)l;
}

/* A C-contiguous buffer of exactly one frame's bytes, for the copying
 * calls; 0, or -1 with an error set. */
static int frame_buffer(Base *b, PyObject *obj, Py_buffer *view, int flags) {
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

/* publish_copy(buffer, timeout) -> seq: the buffer's bytes as the next
 * frame, without a Loan or an array (small messages); the copy holds the GIL. */
static PyObject *writer_publish_copy(Writer *w, PyObject *args) {
  PyObject *obj;
  int64_t timeout_ns;
  Py_buffer src;
  if (!PyArg_ParseTuple(args, "OO&:publish_copy", &obj, timeout_converter, &timeout_ns) ||
      !writer_ready(w) || frame_buffer(&w->base, obj, &src, PyBUF_SIMPLE) < 0)
    return NULL;
  void *frame;
  int rc = loan_slot(w, timeout_ns, &frame);
  if (rc >= 0) memcpy(frame, src.buf, (size_t)src.len);
  PyBuffer_Release(&src);
  if (rc < 0) return stream_failed(&w->base, rc);
  uint64_t seq;
  rc = shl_writer_publish(w->w, &seq);
  if (rc < 0) return stream_failed(&w->base, rc);
  return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *writer_info(Writer *w, PyObject *unused) {
  (void)unused;
  if (w->base.closed) return closed_error(&w->base);
  return stream_info(&w->base, shl_writer_segment(w->w));
}

static PyObject *writer_get_next_seq(Writer *w, void *unused) {
  (void)unused;
  if (w->base.closed) return closed_error(&w->base);
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
     "publish_copy(buffer, timeout) -> seq. Copies one frame's bytes into a slot and publishes."},
    {"info", (PyCFunction)writer_info, METH_NOARGS,
     "The stream's slots, readers, writer and last frame."},
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

static PyType_Spec writer_spec = {"shmlane._shmlane.Writer", sizeof(Writer), 0, HANDLE_FLAGS,
                                  writer_slots};

static PyObject *loan_over(Loan *l, PyObject *type) {
  PyErr_Format(type, "the loan on stream '%s' is already %s",
               l->writer ? l->writer->base.name : "?",
               l->state == PUBLISHED ? "published" : "discarded");
  return NULL;
}

/* publish() -> the frame's sequence number; wakes the readers. */
static PyObject *loan_publish(Loan *l, PyObject *unused) {
  (void)unused;
  if (l->state != LOANED) return loan_over(l, PyExc_ValueError);
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
  if (fill_buffer(view, (PyObject *)l, &l->writer->base, l->frame, false, false, flags) < 0)
    return -1;
  l->frames->base.pins++;
  return 0;
}

static void loan_releasebuffer(Loan *l, Py_buffer *view) {
  (void)view;
  unpin_base(&l->frames->base);
}

static void loan_dealloc(Loan *l) {
  PyTypeObject *type = Py_TYPE(l);
  if (l->writer) {
    if (l->state == LOANED) { /* dropped without publishing: the frame is discarded */
      shl_writer_discard(l->writer->w);
      end_loan(l, DISCARDED);
    }
    Py_DECREF(l->writer);
    Py_DECREF(l->frames);
  }
  type->tp_free(l);
  Py_DECREF(type);
}

static PyMethodDef loan_methods[] = {
    {"publish", (PyCFunction)loan_publish, METH_NOARGS,
     "publish() -> seq. Stamps sequence number and time, wakes readers."},
    {"discard", (PyCFunction)loan_discard, METH_NOARGS, "Give the slot back unpublished."},
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

static PyType_Spec loan_spec = {"shmlane._shmlane.Loan", sizeof(Loan), 0, HANDLE_FLAGS, loan_slots};

/* ---------------------------------------------------------------- Reader and Sample */

static void reader_drop(Base *b) {
  Reader *r = (Reader *)b;
  shl_reader_close(r->r); /* frees the reader's entry; the stream stays */
  r->r = NULL;
}

/* No receive runs without the GIL: release the samples queued meanwhile. */
static void reader_idle(Base *b) {
  Reader *r = (Reader *)b;
  while (r->deferred_mask) {
    int slot = __builtin_ctzll(r->deferred_mask);
    r->deferred_mask &= r->deferred_mask - 1;
    (void)shl_reader_release(r->r, &r->deferred[slot]); /* a sample we pinned: cannot fail */
  }
}

static void sample_unpin(Sample *s) {
  if (!s->pinned) return;
  s->pinned = false;
  Reader *r = s->reader;
  r->held--;
  if (r->base.running > 0) {
    r->deferred[s->s.slot] = s->s;
    r->deferred_mask |= 1ull << s->s.slot;
  } else {
    (void)shl_reader_release(r->r, &s->s);
  }
  unpin_base(&r->base);
}

static PyObject *reader_close(Reader *r, PyObject *unused) {
  (void)unused;
  base_close(&r->base);
  Py_RETURN_NONE;
}

struct receive_ctx {
  shl_reader *r;
  shl_sample s;
  uint32_t spin_ns;
};

static int receive_step(void *ctx, int64_t timeout_ns) {
  struct receive_ctx *c = ctx;
  shl_reader_set_spin(c->r, c->spin_ns);
  c->spin_ns = 0; /* once per receive(): later slices sleep at once */
  return shl_reader_receive(c->r, &c->s, timeout_ns, SHL_WAIT_INTERRUPTIBLE);
}

/* false (error set) unless r may receive now. */
static bool reader_ready(Reader *r) {
  if (r->base.closed) return closed_error(&r->base), false;
  if (r->receiving) {
    PyErr_Format(PyExc_RuntimeError, "stream '%s': another thread is receiving on this reader",
                 r->base.name);
    return false;
  }
  return true;
}

/* The next frame, pinned, for receive() and receive_into(). A frame already
 * waiting needs no GIL hand-off; otherwise waits with the GIL released: a
 * signal ends the core's wait at once, and handlers run (Ctrl-C raises).
 * Sliced, so that releases queued by other threads happen meanwhile. The
 * caller checks r->base.closed after. */
static int receive_sample(Reader *r, int64_t timeout_ns, shl_sample *out) {
  struct receive_ctx c = {r->r, {0}, 0};
  int rc = receive_step(&c, 0);
  if (rc == -ETIMEDOUT && timeout_ns != 0) {
    c.spin_ns = r->spin_ns;
    r->receiving = true;
    rc = run_blocking(&r->base, receive_step, &c, timeout_ns, SLICE_NS, -ETIMEDOUT, -ETIMEDOUT);
    r->receiving = false;
  }
  *out = c.s;
  return rc;
}

/* receive(timeout) -> Sample, pinned. */
static PyObject *reader_receive(Reader *r, PyObject *arg) {
  modstate *st = state_of((PyObject *)r);
  int64_t timeout_ns;
  if (!timeout_converter(arg, &timeout_ns) || !reader_ready(r)) return NULL;
  /* Allocated first, so that no failure can leave a slot pinned. */
  Sample *s = PyObject_New(Sample, st->sample_type);
  if (!s) return NULL;
  s->reader = NULL;
  s->pinned = s->released = false;
  s->exports = 0;
  shl_sample got;
  int rc = receive_sample(r, timeout_ns, &got);
  if (rc == 0) {
    Py_INCREF(r);
    s->reader = r;
    s->s = got;
    s->pinned = true;
    r->held++;
    r->base.pins++;
  }
  if (rc < 0 || r->base.closed) {
    Py_DECREF(s); /* gives back a pin taken after close */
    return stream_failed(&r->base, rc);
  }
  return (PyObject *)s;
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
  int rc = receive_sample(r, timeout_ns, &got);
  if (rc == 0) {
    memcpy(dst.buf, got.data, (size_t)dst.len);
    (void)shl_reader_release(r->r, &got); /* pinned just now: cannot fail */
  }
  PyBuffer_Release(&dst);
  if (rc < 0 || r->base.closed) return stream_failed(&r->base, rc);
  return Py_BuildValue("KKK", (unsigned long long)got.seq, (unsigned long long)got.timestamp_ns,
                       (unsigned long long)got.lost);
}

static PyObject *reader_info(Reader *r, PyObject *unused) {
  (void)unused;
  if (r->base.closed) return closed_error(&r->base);
  return stream_info(&r->base, shl_reader_segment(r->r));
}

static int reader_getbuffer(Reader *r, Py_buffer *view, int flags) {
  return stream_getbuffer(&r->base, view, flags, r->r ? shl_reader_segment(r->r) : NULL);
}

static PyMethodDef reader_methods[] = {
    {"close", (PyCFunction)reader_close, METH_NOARGS,
     "Leave the stream once no sample is pinned any more."},
    {"receive", (PyCFunction)reader_receive, METH_O,
     "receive(timeout) -> Sample. Blocks with the GIL released; Ctrl-C interrupts."},
    {"receive_into", (PyCFunction)reader_receive_into, METH_VARARGS,
     "receive_into(buffer, timeout) -> (seq, timestamp_ns, lost). Copies the next frame out."},
    {"info", (PyCFunction)reader_info, METH_NOARGS,
     "The stream's slots, readers, writer and last frame."},
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
  if (ns > SPIN_MAX_NS) {
    PyErr_Format(PyExc_ValueError, "spin_ns must be at most %d", SPIN_MAX_NS);
    return -1;
  }
  r->spin_ns = (uint32_t)ns;
  return 0;
}

static PyGetSetDef reader_getset[] = {
    BASE_GETSET,
    {"spin_ns", (getter)reader_get_spin_ns, (setter)reader_set_spin_ns,
     "How long receive() polls before sleeping, in ns (at most 1 ms).", NULL},
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

static PyType_Spec reader_spec = {"shmlane._shmlane.Reader", sizeof(Reader), 0, HANDLE_FLAGS,
                                  reader_slots};

/* release(): give the slot back once no exported view remains. Idempotent. */
static PyObject *sample_release(Sample *s, PyObject *unused) {
  (void)unused;
  s->released = true;
  if (s->exports == 0) sample_unpin(s);
  Py_RETURN_NONE;
}

/* Buffer protocol: the pinned frame, read-only, until released. */
static int sample_getbuffer(Sample *s, Py_buffer *view, int flags) {
  Base *b = &s->reader->base;
  if (s->released) {
    PyErr_Format(PyExc_BufferError, "sample %llu of stream '%s' was released",
                 (unsigned long long)s->s.seq, b->name);
    return -1;
  }
  if (flags & PyBUF_WRITABLE) {
    PyErr_Format(PyExc_BufferError, "samples of stream '%s' are read-only", b->name);
    return -1;
  }
  if (fill_buffer(view, (PyObject *)s, b, (void *)s->s.data, true, false, flags) < 0) return -1;
  s->exports++;
  return 0;
}

static void sample_releasebuffer(Sample *s, Py_buffer *view) {
  (void)view;
  if (--s->exports == 0 && s->released) sample_unpin(s);
}

static void sample_dealloc(Sample *s) {
  PyTypeObject *type = Py_TYPE(s);
  sample_unpin(s); /* no view remains: each holds a reference */
  Py_XDECREF(s->reader);
  type->tp_free(s);
  Py_DECREF(type);
}

static PyObject *sample_get_seq(Sample *s, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLongLong(s->s.seq);
}

static PyObject *sample_get_timestamp_ns(Sample *s, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLongLong(s->s.timestamp_ns);
}

static PyObject *sample_get_lost(Sample *s, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLongLong(s->s.lost);
}

static PyObject *sample_get_slot(Sample *s, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLong(s->s.slot);
}

static PyObject *sample_get_released(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong(s->released);
}

static PyObject *sample_get_pinned(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong(s->pinned);
}

static PyMethodDef sample_methods[] = {
    {"release", (PyCFunction)sample_release, METH_NOARGS,
     "Give the slot back once no exported view remains."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sample_getset[] = {
    {"seq", (getter)sample_get_seq, NULL, "Sequence number: 1, 2, ... per stream.", NULL},
    {"timestamp_ns", (getter)sample_get_timestamp_ns, NULL, "CLOCK_MONOTONIC at publish.", NULL},
    {"lost", (getter)sample_get_lost, NULL, "Frames skipped just before this one.", NULL},
    {"slot", (getter)sample_get_slot, NULL, "The slot it occupies.", NULL},
    {"pinned", (getter)sample_get_pinned, NULL, "The writer may not reuse the slot yet.", NULL},
    {"released", (getter)sample_get_released, NULL, "release() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sample_slots[] = {
    {Py_tp_doc, "A published frame pinned by a stream reader; exports it read-only."},
    {Py_tp_dealloc, sample_dealloc},
    {Py_tp_methods, sample_methods},
    {Py_tp_getset, sample_getset},
    {Py_bf_getbuffer, sample_getbuffer},
    {Py_bf_releasebuffer, sample_releasebuffer},
    {0, NULL},
};

static PyType_Spec sample_spec = {"shmlane._shmlane.Sample", sizeof(Sample), 0, HANDLE_FLAGS,
                                  sample_slots};

/* ---------------------------------------------------------------- module functions */

/* The shape tuple into layout->ndim and layout->shape. */
static int parse_shape(PyObject *shape, shl_layout *layout, const char *name) {
  Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
  if (ndim > SHL_MAX_NDIM) {
    PyErr_Format(PyExc_ValueError, "segment '%s': at most %d dimensions", name, SHL_MAX_NDIM);
    return -1;
  }
  layout->ndim = (uint32_t)ndim;
  for (Py_ssize_t i = 0; i < ndim; i++) {
    layout->shape[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape, i));
    if (PyErr_Occurred()) return -1;
  }
  return 0;
}

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
  if (parse_shape(shape, &layout, name) < 0) return NULL;
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
  shl_open_opts opts;
};

static int open_step(void *ctx, int64_t timeout_ns) {
  struct open_ctx *o = ctx;
  o->opts.timeout_ns = timeout_ns;
  return shl_open_ex(&o->seg, o->name, &o->opts);
}

/* open(name, readonly, timeout, owner=0, owner_uid=0) -> Handle. Waits for
 * a creator still initialising (while it lives). owner: shl_owner_policy. */
static PyObject *mod_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  struct open_ctx o = {NULL, NULL, SHL_OPEN_OPTS_INIT};
  int readonly;
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "spO&|II:open", &o.name, &readonly, timeout_converter, &timeout_ns,
                        &o.opts.owner, &o.opts.owner_uid))
    return NULL;
  o.opts.flags = readonly ? SHL_OPEN_READONLY : 0;
  int rc =
      run_blocking(NULL, open_step, &o, timeout_ns, SLICE_NS, SHL_E_NOT_READY, SHL_E_NOT_READY);
  if (rc == PY_ERROR) return NULL;
  if (rc < 0)
    return set_error(st, rc, o.name, o.opts.owner == SHL_OWNER_CREATOR ? AT_ADOPT : AT_OPEN);
  return handle_new(st, o.seg);
}

/* Maps the writer's stream a second time, for loans (see Writer). 0, a core
 * code, or PY_ERROR with an exception set. */
static int map_frames(Writer *w, modstate *st) {
  const shl_segment *seg = shl_writer_segment(w->w);
  shl_segment *again;
  int rc = shl_open(&again, shl_name(seg), 0, SHL_OPEN_DEFAULT_TIMEOUT_NS);
  if (rc < 0) return rc;
  /* The name may have been unlinked and reused in between: compare birth records. */
  shl_info mine, theirs;
  if ((rc = shl_get_info(seg, &mine)) < 0 || (rc = shl_get_info(again, &theirs)) < 0 ||
      mine.created_ns != theirs.created_ns || mine.creator_pid != theirs.creator_pid ||
      mine.total_size != theirs.total_size) {
    shl_close(again);
    return rc < 0 ? rc : -ESTALE;
  }
  w->frames = (Handle *)handle_new(st, again);
  return w->frames ? 0 : PY_ERROR;
}

/* writer_open(name, format, shape, slots, max_readers, flags, mode) -> Writer:
 * creates the stream, or takes over one of the same layout whose writer is gone. */
static PyObject *mod_writer_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  const char *name, *format;
  PyObject *shape;
  shl_stream_opts opts;
  if (!PyArg_ParseTuple(args, "ssO!IIII:writer_open", &name, &format, &PyTuple_Type, &shape,
                        &opts.slots, &opts.max_readers, &opts.flags, &opts.mode))
    return NULL;
  shl_layout layout = {.format = format};
  if (parse_shape(shape, &layout, name) < 0) return NULL;
  shl_writer *core;
  PyThreadState *gil = PyEval_SaveThread(); /* reserving the slots takes a while */
  int rc = shl_writer_open(&core, name, &layout, &opts);
  PyEval_RestoreThread(gil);
  if (rc < 0) return set_error(st, rc, name, AT_STREAM_ADOPT);
  Writer *w = PyObject_New(Writer, st->writer_type);
  if (!w) {
    shl_writer_close(core);
    return NULL;
  }
  w->w = core;
  w->loan = NULL;
  w->loaning = false;
  w->frames = NULL;
  rc = base_init(&w->base, shl_writer_segment(core), "stream writer", writer_drop);
  if (rc == 0) rc = map_frames(w, st);
  if (rc < 0) {
    if (rc != PY_ERROR) set_error(st, rc, name, AT_STREAM_ADOPT);
    Py_DECREF(w);
    return NULL;
  }
  return (PyObject *)w;
}

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

/* reader_open(name, mode, timeout, max_pinned, owner, owner_uid) -> Reader.
 * Waits for the stream to appear. */
static PyObject *mod_reader_open(PyObject *mod, PyObject *args) {
  modstate *st = PyModule_GetState(mod);
  struct reader_open_ctx o = {NULL, NULL, SHL_READER_OPTS_INIT, 0};
  int64_t timeout_ns;
  if (!PyArg_ParseTuple(args, "sIO&III:reader_open", &o.name, &o.opts.mode, timeout_converter,
                        &timeout_ns, &o.opts.max_pinned, &o.opts.owner, &o.opts.owner_uid))
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
  r->held = 0;
  r->spin_ns = 0;
  r->deferred_mask = 0;
  rc = base_init(&r->base, shl_reader_segment(o.r), "stream reader", reader_drop);
  r->base.idle = reader_idle;
  if (rc < 0) {
    Py_DECREF(r);
    return set_error(st, rc, o.name, AT_STREAM_OPEN);
  }
  return (PyObject *)r;
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
     "open(name, readonly, timeout, owner=0, owner_uid=0) -> Handle"},
    {"writer_open", mod_writer_open, METH_VARARGS,
     "writer_open(name, format, shape, slots, max_readers, flags, mode) -> Writer"},
    {"reader_open", mod_reader_open, METH_VARARGS,
     "reader_open(name, mode, timeout, max_pinned, owner, owner_uid) -> Reader"},
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
      !(st->busy = add_exception(
            mod, "shmlane.StreamBusy",
            "The stream has no room for this writer (a live writer holds it: errno EBUSY) or "
            "reader (its reader table is full: errno EUSERS).",
            st->error, PyExc_OSError)))
    return -1;
  if (PyModule_AddStringConstant(mod, "core_version", shl_version_string()) < 0 ||
      PyModule_AddIntConstant(mod, "NAME_MAX", SHL_NAME_MAX) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX", SHL_FORMAT_MAX) < 0 ||
      PyModule_AddIntConstant(mod, "FORMAT_MAX_FIELDS", SHL_FORMAT_MAX_FIELDS) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_ARRAY", SHL_KIND_ARRAY) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STRUCT", SHL_KIND_STRUCT) < 0 ||
      PyModule_AddIntConstant(mod, "KIND_STREAM", SHL_KIND_STREAM) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_REPLACE", SHL_CREATE_REPLACE) < 0 ||
      PyModule_AddIntConstant(mod, "CREATE_UNLINK_ON_CLOSE", SHL_CREATE_UNLINK_ON_CLOSE) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_BLOCK", SHL_STREAM_BLOCK) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_MAX_SLOTS", SHL_STREAM_MAX_SLOTS) < 0 ||
      PyModule_AddIntConstant(mod, "STREAM_MAX_READERS", SHL_STREAM_MAX_READERS) < 0 ||
      PyModule_AddIntConstant(mod, "RECV_LATEST", SHL_RECV_LATEST) < 0 ||
      PyModule_AddIntConstant(mod, "RECV_ALL", SHL_RECV_ALL) < 0)
    return -1;
  return 0;
}

/* Every object the module state holds, for traverse and clear. */
// clang-format off
#define STATE_OBJECTS(X)                                                                   \
  X(handle_type) X(writer_type) X(reader_type) X(loan_type) X(sample_type)                 \
  X(error) X(corrupt) X(mismatch) X(recovered) X(writer_gone) X(busy)
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
