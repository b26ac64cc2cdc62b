/* Core error codes to Python exceptions, with what the caller can do about them. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ext.h"

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

void set_oserror(PyObject *type, int err, const char *text, const char *name) {
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

/* Whether this process's user namespace maps uid (/proc/self/uid_map: first
 * uid inside, first outside, count, a range a line); true if it cannot tell. */
static bool uid_mapped(uid_t uid) {
  FILE *f = fopen("/proc/self/uid_map", "re");
  if (!f) return true;
  unsigned long inside, outside, count;
  bool mapped = false;
  while (!mapped && fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
    mapped = uid >= inside && uid - inside < count;
  fclose(f);
  return mapped;
}

static void set_foreign_owner(const char *name, const char *noun, enum err_context where) {
  char path[64], who[96], msg[512];
  const char *user = NULL;
  bool unmapped = false;
  struct stat st;
  if (lstat(object_path(name, path, sizeof path), &st) == 0) {
    /* Every owner this user namespace does not map shows as one uid (65534),
     * which may be the caller's own: the core refused it as another user's. */
    unmapped = st.st_uid == geteuid() || !uid_mapped(st.st_uid);
    if (unmapped)
      snprintf(who, sizeof who, "a user this user namespace does not map (shown as uid %u)",
               (unsigned)st.st_uid);
    else
      user_text(st.st_uid, who, sizeof who, &user);
  } else {
    snprintf(who, sizeof who, "another user");
  }
  if (where == AT_ADOPT || where == AT_STREAM_ADOPT) {
    snprintf(msg, sizeof msg,
             "%s '%s' exists and is owned by %s, not by you: %s never adopts another user's %s "
             "(pick another name, or have its owner remove it)",
             noun, name, who, where == AT_ADOPT ? "creating" : "a writer", noun);
  } else if (unmapped) {
    /* Naming that uid would accept every such user (or, as one's own, none). */
    snprintf(msg, sizeof msg, "%s '%s' is owned by %s; pass owner='any' to open it anyway",
             noun, name, who);
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

/* The name holds a segment that opens (of some kind). */
static bool valid_segment(const char *name) {
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, name, SHL_OPEN_READONLY, 0);
  shl_close(seg);
  return rc == 0;
}

/* The pid of the stream's writer as its header records it, or 0 (a message
 * names it: a second copy of a program learns which process to stop). */
static long writer_pid_of(const char *name) {
  shl_segment *seg = NULL;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  int rc = shl_open(&seg, name, SHL_OPEN_READONLY, 0);
  if (rc == 0) rc = shl_stream_get_info(seg, &info);
  shl_close(seg);
  return rc == 0 && info.writer_pid > 0 ? info.writer_pid : 0;
}

/* The errors only opening a stream gives; false if rc is not one of them. */
static bool set_stream_open_error(modstate *st, int rc, const char *name) {
  long pid;
  switch (rc) {
    case -ENOENT: /* a reader waited its timeout: say for what, not only the errno's text */
      if (access("/dev/shm", F_OK) < 0) return false; /* set_error names the missing place */
      set_oserror_text(PyExc_FileNotFoundError, ENOENT,
                       PyUnicode_FromFormat("no stream '%s' appeared within the reader's "
                                            "timeout: a Writer creates it (timeout=None waits "
                                            "for one without limit)",
                                            name),
                       name);
      return true;
    case -EBUSY:
      pid = writer_pid_of(name);
      set_oserror_text(st->busy, EBUSY,
                       pid ? PyUnicode_FromFormat("a live writer (pid %ld) holds the stream", pid)
                           : PyUnicode_FromString("a live writer holds the stream"),
                       name);
      return true;
    case -EUSERS:
      set_oserror(st->busy, EUSERS, "the stream's reader table is full (see max_readers)", name);
      return true;
    case SHL_E_LAYOUT_MISMATCH:
    case SHL_E_META_MISMATCH:
      PyErr_Format(st->mismatch,
                   "stream '%s' exists with another %s (Writer(..., replace=True) replaces it, "
                   "and its readers follow)",
                   name, rc == SHL_E_META_MISMATCH ? "metadata format" : "frame layout or slot count");
      return true;
    case SHL_E_BAD_KIND:
      if (!valid_segment(name)) return false; /* a damaged header: set_error says so */
      PyErr_Format(st->mismatch, "segment '%s' is not a stream", name);
      return true;
    default: return false;
  }
}

/* A writer meets an object under the name that no opener accepts (a peer's
 * damage, a creator killed half-way, another format version): what is
 * wrong, and the two ways to take the name back. */
static void set_not_a_stream(modstate *st, int rc, const char *name) {
  PyErr_Format(st->corrupt,
               "stream '%s': the object under the name is not a valid stream: %s (%s); "
               "Writer(..., replace=True) takes the name back while no writer holds it, "
               "or `shmlane rm %s` removes it",
               name, shl_strerror(rc), shl_err_name(rc), name);
}

/* WriterGone, with `reason` "closed" (a clean close) or "died"; its
 * subclass LayoutChanged with "replaced". */
static void set_writer_gone(modstate *st, int rc, const char *name) {
  const char *reason = rc == SHL_E_WRITER_CLOSED ? "closed" : rc == SHL_E_REPLACED ? "replaced" : "died";
  PyObject *exc =
      rc == SHL_E_REPLACED
          ? PyObject_CallFunction(
                st->layout_changed, "N",
                PyUnicode_FromFormat("stream '%s' was replaced under its name (by a writer with "
                                     "another layout, or removed and created again); this "
                                     "reader was opened not to follow it",
                                     name))
          : PyObject_CallFunction(
                st->writer_gone, "N",
                PyUnicode_FromFormat("stream '%s': every frame is received, and its writer %s "
                                     "with no other taking over",
                                     name, rc == SHL_E_WRITER_CLOSED ? "closed it" : "died"));
  PyObject *why = exc ? PyUnicode_FromString(reason) : NULL;
  if (why && PyObject_SetAttrString(exc, "reason", why) == 0)
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_XDECREF(why);
  Py_XDECREF(exc);
}

PyObject *set_error(modstate *st, int rc, const char *name, enum err_context where) {
  const char *text = shl_strerror(rc);
  const char *noun = where >= AT_STREAM_OPEN ? "stream" : "segment";
  if ((where == AT_STREAM_OPEN || where == AT_STREAM_ADOPT) && set_stream_open_error(st, rc, name))
    return NULL;
  char path[64];
  const char *what = rc == SHL_E_NOT_SHMLANE || rc == -EEXIST ? planted(name, path, sizeof path)
                                                              : NULL;
  bool damaged = is_header_error(rc) || rc == SHL_E_CREATOR_DEAD;
  if (!what && where == AT_STREAM_ADOPT && damaged) {
    set_not_a_stream(st, rc, name);
  } else if (what) {
    /* Something else sits at the name: say what, not "bad magic" or "exists". */
    PyErr_Format(rc == -EEXIST ? PyExc_FileExistsError : st->corrupt,
                 "'%s' is %s, not a shmlane %s", path, what, noun);
  } else if (rc == -EEXIST && where == AT_CREATE) {
    /* A second run of a program that creates: name the ways to go on. */
    set_oserror_text(PyExc_FileExistsError, EEXIST,
                     PyUnicode_FromFormat("segment '%s' exists: shmlane.open('%s') opens it, "
                                          "create(..., exist_ok=True) opens it if its layout is "
                                          "the same, replace=True makes a new one",
                                          name, name),
                     name);
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
  } else if (rc == -ENOENT && access("/dev/shm", F_OK) < 0 && errno == ENOENT) {
    /* Not the name but the place of every name (a container run with --ipc=none has none). */
    set_oserror(PyExc_OSError, ENOENT,
                "there is no /dev/shm here: POSIX shared memory needs a tmpfs mounted there", name);
  } else if (rc > -4096 && rc < 0) {
    /* OSError picks FileNotFoundError, PermissionError, TimeoutError, ... */
    set_oserror(PyExc_OSError, -rc, rc == -ETIMEDOUT ? "timed out" : text, name);
  } else if (rc == SHL_E_BAD_NAME) {
    PyErr_Format(PyExc_ValueError,
                 "invalid segment name '%s': 1 to %d characters from "
                 "[A-Za-z0-9._-], starting with a letter or digit",
                 name, SHL_NAME_MAX);
  } else if (rc == SHL_E_WRITER_GONE || rc == SHL_E_WRITER_CLOSED || rc == SHL_E_REPLACED) {
    set_writer_gone(st, rc, name);
  } else if (rc == SHL_E_BAD_MODE) {
    /* Asked for, or found on a stream (a chmod): the mode is at fault either way. */
    PyErr_Format(PyExc_ValueError, "%s '%s': %s (%s)", noun, name, text, shl_err_name(rc));
  } else if (is_header_error(rc)) {
    /* At create the caller's layout is at fault; later, the header in memory is. */
    PyErr_Format(where == AT_CREATE ? PyExc_ValueError : st->corrupt, "%s '%s': %s (%s)", noun,
                 name, text, shl_err_name(rc));
  } else {
    PyErr_Format(st->error, "%s '%s': %s (%s)", noun, name, text, shl_err_name(rc));
  }
  return NULL;
}

PyObject *closed_error(const Base *b) {
  PyErr_Format(PyExc_ValueError, "%s '%s' is closed", b->what, b->name);
  return NULL;
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

PyObject *type_name(PyObject *obj) {
  return PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__name__");
}

PyObject *stream_error(Base *b, int rc) {
  modstate *st = state_of((PyObject *)b);
  if (rc == SHL_E_FORKED) {
    PyObject *type = type_name((PyObject *)b);
    if (type)
      PyErr_Format(st->error,
                   "%U of '%s' was opened in process %ld before fork(): open it again in this "
                   "process",
                   type, b->name, b->pid);
    Py_XDECREF(type);
    return NULL;
  }
  if (rc == SHL_E_PIN_LIMIT && Py_TYPE((PyObject *)b) == st->reader_type)
    return PyErr_Format(st->error,
                        "reader of '%s' holds %u samples (its max_pinned): release them (del "
                        "the arrays, sample.release(), or copy what you keep) before receiving "
                        "more",
                        b->name, ((Reader *)b)->held);
  if (rc == SHL_E_SLOTS_PINNED && Py_TYPE((PyObject *)b) == st->writer_type) return slots_pinned((Writer *)b);
  return set_error(st, rc, b->name, AT_STREAM);
}
