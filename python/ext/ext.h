/* The private interfaces between the files of the extension module
 * shmlane._shmlane (python/ext/): the C core's public API for Python. The
 * extension only converts arguments, calls the core with the GIL released
 * where it may block, keeps Ctrl-C working, exports shared memory through the
 * buffer protocol and maps error codes to exceptions; everything else lives
 * in the pure-Python package (python/shmlane/).
 *
 *   errors.c   core error codes to exceptions (calls none of the others)
 *   base.c     what every handle shares: lifetime pins, blocking calls, buffers
 *   segment.c  Handle (a segment), create() and open()
 *   writer.c   Writer and Loan, writer_open()
 *   reader.c   Reader, reader_open()
 *   sample.c   Sample, a frame a Reader pinned
 *   format.c   the core's reading of element formats (format_walk())
 *   module.c   the module: its functions, types, exceptions and state */
#ifndef SHMLANE_EXT_H
#define SHMLANE_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shmlane.h"

/* Longest stretch a Ctrl-C waits during calls that signals do not interrupt
 * (the robust mutex, the open retry loop, a loan). */
#define SLICE_NS 50000000LL
/* run_blocking()'s result when a Python exception is set; no core code is this. */
#define PY_ERROR INT_MIN

/* A str's UTF-8, owned by the str (PyUnicode_AsUTF8 enters the limited API,
 * which the abi3 build of 3.11+ uses, only in 3.13). */
static inline const char *utf8(PyObject *s) { return PyUnicode_AsUTF8AndSize(s, NULL); }
/* loan_slot()'s result when another thread closed the writer meanwhile. */
#define CLOSED_MEANWHILE (INT_MIN + 1)

typedef struct {
  PyTypeObject *handle_type, *held_type, *writer_type, *reader_type, *loan_type, *sample_type;
  PyObject *error;       /* shmlane.Error */
  PyObject *corrupt;     /* shmlane.CorruptSegment(Error) */
  PyObject *mismatch;    /* shmlane.LayoutMismatch(Error, ValueError) */
  PyObject *recovered;   /* shmlane.LockRecovered(Warning): warned by the Python layer */
  PyObject *writer_gone; /* shmlane.WriterGone(Error) */
  PyObject *layout_changed; /* shmlane.LayoutChanged(WriterGone) */
  PyObject *busy;        /* shmlane.StreamBusy(Error, OSError) */
  PyObject *setflags, *array; /* interned: a loan's array made read-only and let go at its end */
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
  bool (*stop)(Base *self); /* optional: true once a blocking call is to end (its time-out) */
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
  long lock_native;          /* its kernel thread id: whether it still runs */
  bool readonly;
} Handle;

typedef struct Loan Loan;

/* Loans are exported through a second mapping of the stream, `frames`, so
 * that close() gives up the writer role at once, however long views of a
 * loan live: they pin `frames`, not the writer. */
typedef struct {
  Base base;
  shl_writer *w;  /* NULL once released, and while a replace() has it */
  Handle *frames; /* NULL once released */
  Loan *loan;     /* the outstanding loan (borrowed: the loan refers to us), or NULL */
  bool loaning;   /* a loan() call is in progress */
  Py_ssize_t meta_size; /* bytes of each frame's metadata record, 0 for none */
} Writer;

/* What a reader's samples of one stream share: the frame layout, its format
 * (layout.format points to `format`) and the metadata record's size. A
 * reader that follows its stream's name to a new stream adds one; each is
 * kept for as long as the reader lives, since samples and views of the
 * streams it left may still show them. */
typedef struct StreamLayout {
  struct StreamLayout *older;
  Layout layout;
  Py_ssize_t meta_size; /* 0: no metadata */
  char format[];
} StreamLayout;

/* The core's reader is single-threaded, so a sample released while another
 * thread is inside receive (without the GIL) is queued here, and released by
 * that thread between slices of its wait. A reader holds at most max_pinned
 * samples (at most SHL_STREAM_MAX_SLOTS), so the queue never overflows. */
typedef struct {
  Base base;
  shl_reader *r;  /* NULL once released */
  bool receiving; /* a receive() call is in progress */
  /* receive_slice()'s claim (a dict, borrowed while it runs): the call
   * ends, nothing received, once the dict has a key "by" (interrupt()). */
  PyObject *stop_claim;
  uint32_t held;  /* samples pinned */
  uint32_t spin_ns;
  StreamLayout *layouts; /* the stream read now first, then those left */
  uint32_t ndeferred;
  shl_sample deferred[SHL_STREAM_MAX_SLOTS];
  /* spin="auto": each slot's frame address in the stream read now (from the
   * frames received there), and per slot a sample made over it ahead of its
   * frame, with its array, unpinned until a frame lands there (ready_raw) and
   * the caller's object holding both (ready); `spare`: a fresh sample left
   * unused by a receive that took a ready one. */
  const void *slot_data[SHL_STREAM_MAX_SLOTS];
  struct Sample *ready_raw[SHL_STREAM_MAX_SLOTS];
  PyObject *ready[SHL_STREAM_MAX_SLOTS];
  struct Sample *spare;
  /* receive_auto()'s way to the caller's reader object: weak methods
   * (weakref.WeakMethod), so that object can go as soon as it is dropped. */
  PyObject *rehearse, *adopt;
} Reader;

enum loan_state { LOANED, PUBLISHED, DISCARDED };

/* A slot loaned by a writer: exported writable until published or discarded. */
struct Loan {
  PyObject ob_base;
  Writer *writer; /* NULL if the loan never started */
  Handle *frames; /* the writer's, which views pin */
  void *frame;    /* in `frames` */
  enum loan_state state;
  /* arm(): the metadata record publish() stores when given none, and weak
   * references to the array over the loan, made read-only when the loan
   * ends, and to the caller's object, whose `array` then becomes None. */
  PyObject *meta, *view, *owner;
};

/* A published frame pinned by a reader: exported read-only. The pin is given
 * back once release() was called (or the sample is gone) and no exported view
 * remains, so a view kept past release never sees its slot rewritten. A
 * stand-in (receive_due() while the next frame is due) holds no frame and
 * pins nothing: it exports zero frames of the layout, as the reader does.
 * A prepared sample (spin="auto") exports its slot before a frame lands
 * there and is held by its reader only, never given out unpinned; the
 * receive that pins a frame at that very address hands it out. */
typedef struct Sample {
  PyObject ob_base;
  Reader *reader; /* NULL if nothing was received; borrowed while prepared */
  shl_sample s;
  bool pinned, released, standin, prepared;
  Py_ssize_t exports;
  const StreamLayout *stream; /* its stream's, kept by the reader */
} Sample;

static inline modstate *state_of(PyObject *obj) { return PyType_GetModuleState(Py_TYPE(obj)); }

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

/* ---------------------------------------------------------------- errors.c */

/* AT_ADOPT: opening an existing segment in place of creating it;
 * AT_STREAM_ADOPT: a writer creating a stream or taking one over. */
enum err_context { AT_CREATE, AT_ADOPT, AT_OPEN, AT_USE, AT_STREAM_OPEN, AT_STREAM_ADOPT, AT_STREAM };

/* Raises the exception for core code rc about segment or stream `name`;
 * returns NULL. */
PyObject *set_error(modstate *st, int rc, const char *name, enum err_context where);
/* An OSError subclass `type` (errno err, text) with the name as filename. */
void set_oserror(PyObject *type, int err, const char *text, const char *name);
/* ValueError: the handle is closed; returns NULL. */
PyObject *closed_error(const Base *b);
/* The Python error for a stream call on b that failed with rc (a core
 * code; the handle still open). */
PyObject *stream_error(Base *b, int rc);
/* The name of an object's type ("Writer"), a new reference: PyTypeObject's
 * fields are not in the limited API. */
PyObject *type_name(PyObject *obj);

/* ---------------------------------------------------------------- base.c */

/* Frees the core object once the handle is closed and nothing pins it. */
void release_if_done(Base *b);
void base_close(Base *b);
/* Drops a pin taken by an exported view; shared by every exporter. */
void unpin_base(Base *b);
/* busy: another thread's call in progress on b rules this one out; not in
 * a process forked meanwhile, where that thread does not exist (the core
 * then says SHL_E_FORKED). */
bool busy_here(const Base *b, bool busy);
/* After a blocking call during which another thread closed the object. */
PyObject *closed_meanwhile(Base *b);
/* A stream call that failed, or found its handle closed by another thread
 * meanwhile (then the handle is released if nothing else pins it): the
 * Python error to raise. */
PyObject *stream_failed(Base *b, int rc);
/* Timeout in seconds (None: forever) to nanoseconds (-1: forever); an O& converter. */
int timeout_converter(PyObject *obj, void *out);
/* The shape tuple into layout->ndim and layout->shape. */
int parse_shape(PyObject *shape, shl_layout *layout, const char *name);

typedef int (*step_fn)(void *ctx, int64_t timeout_ns);
/* step() with the GIL released, in slices, with Ctrl-C working (base.c says how). */
int run_blocking(Base *pin, step_fn step, void *ctx, int64_t timeout_ns, int64_t slice_ns,
                 int again, int expired);

/* Fills the head shared by all handles from seg's layout (of its payload, or
 * of one frame for a stream). SHL_E_BAD_SHAPE if it does not fit Py_ssize_t. */
int base_init(Base *b, const shl_segment *seg, const char *what, void (*drop)(Base *));
/* The Layout of seg's payload (of one frame for a stream); l->format points
 * into seg. SHL_E_BAD_SHAPE if it does not fit Py_ssize_t. */
int layout_init(Layout *l, const shl_segment *seg);
/* Fills `view` with buf as layout l describes it (probe: as zero frames). */
int fill_buffer(Py_buffer *view, PyObject *exporter, const Base *b, const Layout *l, void *buf,
                bool readonly, bool probe, int flags);
void base_dealloc(Base *b);
/* tp_free of a type (PyTypeObject's fields are not in the limited API). */
void free_object(PyTypeObject *type, void *obj);
PyObject *base_repr(Base *b);
PyObject *base_layout(Base *b, PyObject *unused);
PyObject *base_get_name(Base *b, void *unused);
PyObject *base_get_closed(Base *b, void *unused);
/* A stream's counters as a dict (Handle.stream_info, Writer.info, Reader.info). */
PyObject *stream_info(Base *b, const shl_segment *seg);
/* A metadata format (a writer's or reader's own copy: rc its record's size,
 * 0 none, or an error) as a str, or None. */
PyObject *stream_meta_format(Base *b, int64_t rc, const char *format);
/* The probe a Writer or Reader exports: zero frames, read-only. */
int stream_getbuffer(Base *b, Py_buffer *view, int flags, const shl_segment *seg);
void stream_releasebuffer(Base *b, Py_buffer *view);
/* A C-contiguous buffer of exactly one frame's bytes, for the copying calls
 * (publish_copy, receive_into); 0, or -1 with an error set. */
int frame_buffer(Base *b, PyObject *obj, Py_buffer *view, int flags);

/* ---------------------------------------------------------------- the types */

/* segment.c */
extern PyType_Spec handle_spec, held_spec;
/* Wraps seg (taking ownership) in a new Handle. */
PyObject *handle_new(modstate *st, shl_segment *seg);
PyObject *mod_create(PyObject *mod, PyObject *args);
PyObject *mod_open(PyObject *mod, PyObject *args);

/* writer.c */
extern PyType_Spec writer_spec, loan_spec;
PyObject *mod_writer_open(PyObject *mod, PyObject *args);
PyObject *mod_writer_replace(PyObject *mod, PyObject *args);

/* reader.c */
extern PyType_Spec reader_spec;
PyObject *mod_reader_open(PyObject *mod, PyObject *args);
/* The probe a Reader exports: zero frames of its layout (and a stand-in). */
int reader_getbuffer(Reader *r, Py_buffer *view, int flags);

/* sample.c */
extern PyType_Spec sample_spec;

/* format.c */
PyObject *mod_format_walk(PyObject *mod, PyObject *arg);
PyObject *mod_format_from_typestr(PyObject *mod, PyObject *arg);

#endif /* SHMLANE_EXT_H */
