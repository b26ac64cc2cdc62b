/* Sample: a published frame a Reader pinned, exported read-only until
 * released. */
#include <assert.h>
#include <string.h>

#include "ext.h"

static void sample_unpin(Sample *s) {
  if (!s->pinned) return;
  s->pinned = false;
  Reader *r = s->reader;
  r->held--;
  if (r->base.running > 0) {
    r->deferred[r->ndeferred++] = s->s;
    shl_reader_wake(r->r); /* the receiving thread releases it */
  } else {
    (void)shl_reader_release(r->r, &s->s);
  }
  unpin_base(&r->base);
}

/* release(): give the slot back once no exported view remains. Idempotent.
 * A stand-in has none, and can be rehearsed with again. */
static PyObject *sample_release(Sample *s, PyObject *unused) {
  (void)unused;
  s->released = !s->standin;
  if (s->exports == 0) sample_unpin(s);
  Py_RETURN_NONE;
}

/* copy_into(buffer) -> (seq, timestamp_ns, lost): the frame copied into a
 * buffer receive_into() takes, then released (still pinned on an error):
 * receive_into() of a frame an earlier call took (_handover.py). */
static PyObject *sample_copy_into(Sample *s, PyObject *obj) {
  Py_buffer dst;
  if (!s->pinned || s->released) return PyErr_Format(PyExc_ValueError, "no frame held");
  if (frame_buffer(&s->reader->base, obj, &dst, PyBUF_WRITABLE) < 0) return NULL;
  /* Its stream's layout is the reader's: taken last, it is delivered first. */
  assert(dst.len == s->stream->layout.len);
  memcpy(dst.buf, s->s.data, (size_t)dst.len);
  PyBuffer_Release(&dst);
  Py_DECREF(sample_release(s, NULL)); /* None */
  return Py_BuildValue("KKK", (unsigned long long)s->s.seq, (unsigned long long)s->s.timestamp_ns,
                       (unsigned long long)s->s.lost);
}

/* Buffer protocol: the pinned frame, read-only, until released. */
static int sample_getbuffer(Sample *s, Py_buffer *view, int flags) {
  if (!s->reader) { /* a prepared sample its reader let go */
    PyErr_SetString(PyExc_BufferError, "the reader let this sample go");
    return -1;
  }
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
  if (s->standin) return reader_getbuffer(s->reader, view, flags); /* zero frames */
  if (fill_buffer(view, (PyObject *)s, b, &s->stream->layout, (void *)s->s.data, true, false,
                  flags) < 0)
    return -1;
  s->exports++;
  return 0;
}

static void sample_releasebuffer(Sample *s, Py_buffer *view) {
  (void)view;
  if (--s->exports == 0 && s->released) sample_unpin(s);
}

static void sample_dealloc(Sample *s) {
  PyTypeObject *type = Py_TYPE((PyObject *)s);
  sample_unpin(s); /* no view remains: each holds a reference */
  if (!s->prepared) Py_XDECREF((PyObject *)s->reader);
  free_object(type, s);
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

/* The metadata record's bytes, copied while the frame is pinned (so they are
 * always its frame's), or None if the stream carries none. */
static PyObject *sample_get_meta(Sample *s, void *unused) {
  (void)unused;
  if (!s->stream || !s->stream->meta_size) Py_RETURN_NONE;
  if (s->standin) { /* a record of zeros, to rehearse with */
    PyObject *zeros = PyBytes_FromStringAndSize(NULL, s->stream->meta_size);
    if (zeros) memset(PyBytes_AsString(zeros), 0, (size_t)s->stream->meta_size); /* stable ABI */
    return zeros;
  }
  if (!s->pinned) {
    PyErr_Format(PyExc_ValueError, "sample %llu was released", (unsigned long long)s->s.seq);
    return NULL;
  }
  const void *meta;
  uint64_t size;
  int rc = shl_sample_get_meta(s->reader->r, &s->s, &meta, &size);
  if (rc < 0) return stream_failed(&s->reader->base, rc);
  if (!meta) Py_RETURN_NONE; /* Py_NewRef is CPython 3.10+; we build for 3.9 */
  return PyBytes_FromStringAndSize(meta, (Py_ssize_t)size);
}

static PyObject *sample_get_new_stream(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong((s->s.flags & SHL_SAMPLE_NEW_STREAM) != 0);
}

static PyObject *sample_get_released(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong(s->released);
}

static PyObject *sample_get_standin(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong(s->standin);
}

static PyObject *sample_get_pinned(Sample *s, void *unused) {
  (void)unused;
  return PyBool_FromLong(s->pinned);
}

static PyMethodDef sample_methods[] = {
    {"release", (PyCFunction)sample_release, METH_NOARGS,
     "Give the slot back once no exported view remains."},
    {"copy_into", (PyCFunction)sample_copy_into, METH_O,
     "copy_into(buffer) -> (seq, timestamp_ns, lost): into receive_into()'s buffer, released."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sample_getset[] = {
    {"seq", (getter)sample_get_seq, NULL, "Sequence number: 1, 2, ... per stream.", NULL},
    {"timestamp_ns", (getter)sample_get_timestamp_ns, NULL, "CLOCK_MONOTONIC at publish.", NULL},
    {"lost", (getter)sample_get_lost, NULL, "Frames skipped just before this one.", NULL},
    {"slot", (getter)sample_get_slot, NULL, "The slot it occupies.", NULL},
    {"meta", (getter)sample_get_meta, NULL,
     "Its metadata record's bytes (a copy), or None for a stream without metadata.", NULL},
    {"new_stream", (getter)sample_get_new_stream, NULL,
     "The first frame from a stream the reader followed its name to (a new layout).", NULL},
    {"pinned", (getter)sample_get_pinned, NULL, "The writer may not reuse the slot yet.", NULL},
    {"standin", (getter)sample_get_standin, NULL,
     "receive_due()'s stand-in for a frame that is due: no frame, zero frames exported.", NULL},
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

PyType_Spec sample_spec = {"shmlane._shmlane.Sample", sizeof(Sample), 0, HANDLE_FLAGS,
                                  sample_slots};
