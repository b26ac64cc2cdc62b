/* Named segments: create, open with validation, close, unlink, list. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define POSIX_NAME_MAX (sizeof SHL_POSIX_PREFIX - 1 + SHL_NAME_MAX)

static bool name_char_ok(char ch, bool first) {
  bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
  return alnum || (!first && (ch == '.' || ch == '_' || ch == '-'));
}

int shl_name_check(const char *name) {
  if (!name || !name[0]) return SHL_E_BAD_NAME;
  size_t i = 0;
  for (; name[i]; i++)
    if (i >= SHL_NAME_MAX || !name_char_ok(name[i], i == 0)) return SHL_E_BAD_NAME;
  return 0;
}

static int posix_name(const char *name, char out[POSIX_NAME_MAX + 1]) {
  int rc = shl_name_check(name);
  if (rc < 0) return rc;
  snprintf(out, POSIX_NAME_MAX + 1, "%s%s", SHL_POSIX_PREFIX, name);
  return 0;
}

/* ---------------------------------------------------------------- create */

static bool format_is_struct(const char *format) {
  while (*format && strchr("@=<>!^ ", *format)) format++;
  return format[0] == 'T' && format[1] == '{';
}

/* Checks the caller's layout and fills the header's layout fields. */
static int plan_layout(struct shl__header *h, const shl_layout *layout, uint32_t kind) {
  shl_layout plan;
  uint64_t payload;
  int rc = shl__layout_plan(layout, &plan, &payload);
  if (rc < 0) return rc;
  if (kind == SHL_KIND_STRUCT && plan.ndim != 0) return SHL_E_BAD_KIND;
  h->kind = kind ? kind : (plan.ndim == 0 && format_is_struct(plan.format) ? SHL_KIND_STRUCT
                                                                           : SHL_KIND_ARRAY);
  h->itemsize = plan.itemsize;
  h->ndim = plan.ndim;
  memcpy(h->shape, plan.shape, sizeof h->shape);
  memcpy(h->strides, plan.strides, sizeof h->strides);
  h->format_offset = SHL__HEADER_SIZE;
  h->format_len = (uint32_t)strlen(plan.format);
  h->payload_size = payload;
  return 0;
}

/* Why (docs/format.md, Permissions): without rw the owner's own processes
 * could not open the object; a write-only opener cannot map it, only truncate
 * it under its users; nothing here is ever executed. */
int shl_mode_check(uint32_t mode, uint32_t kind) {
  bool write_only = ((mode & 020) && !(mode & 040)) || ((mode & 02) && !(mode & 04));
  if ((mode & ~0666u) || (mode & 0600) != 0600 || write_only) return SHL_E_BAD_MODE;
  return kind == SHL_KIND_STREAM && shl__mode_has_readonly_class(mode) ? SHL_E_BAD_MODE : 0;
}

int shl__segment_create(shl_segment **out, const char *name, const shl_layout *layout,
                        const shl_create_opts *opts, const struct shl__extra *extra) {
  shl_create_opts o = SHL_CREATE_OPTS_INIT;
  static const struct shl__extra none = {0, 0, NULL, NULL, NULL, 0, false};
  char pname[SHL__STAGE_NAME_MAX]; /* the name, or where it is staged */
  struct shl__header plan;
  if (!out) return -EINVAL;
  *out = NULL;
  if (!extra) extra = &none;
  int rc = opts ? shl__opts_copy(&o, &shl__create_opts_fields, opts) : 0;
  if (rc < 0) return rc;
  opts = &o;
  rc = posix_name(name, pname);
  if (rc < 0) return rc;
  if (opts->kind > SHL_KIND_STREAM) return SHL_E_BAD_KIND;
  const uint32_t known = SHL_CREATE_REPLACE | SHL_CREATE_UNLINK_ON_CLOSE | SHL_CREATE_NO_RESERVE;
  if (opts->flags & ~known) return -EINVAL;
  uint32_t mode = opts->mode ? opts->mode : 0600;
  rc = shl_mode_check(mode, opts->kind);
  if (rc < 0) return rc;
  memset(&plan, 0, sizeof plan);
  rc = plan_layout(&plan, layout, opts->kind);
  if (rc < 0) return rc;

  uint64_t ext_size = extra->ext_size;
  if (extra->payload_size > plan.payload_size) plan.payload_size = extra->payload_size;
  uint64_t head_end = SHL__HEADER_SIZE + plan.format_len + 1;
  plan.ext_offset = ext_size ? shl__round_up(head_end, SHL__EXT_ALIGN) : 0;
  plan.ext_size = ext_size;
  plan.payload_offset =
      shl__round_up(ext_size ? plan.ext_offset + ext_size : head_end, SHL__PAYLOAD_ALIGN);
  if (__builtin_add_overflow(plan.payload_offset, plan.payload_size, &plan.total_size) ||
      plan.total_size > (uint64_t)INT64_MAX)
    return SHL_E_BAD_SHAPE;

  shl_segment *seg = shl__seg_new(-1);
  if (!seg) return -ENOMEM;
  snprintf(seg->name, sizeof seg->name, "%s", name);
  if (extra->staged) {
    /* A private name, not listed, that nobody can guess: /dev/shm is every
     * user's, and one who created it first would make the replacement fail. */
    snprintf(seg->staged, sizeof seg->staged, "%s%s.%ld.%016llx", SHL__STAGE_PREFIX, name,
             (long)getpid(), (unsigned long long)shl__random64());
    snprintf(pname, sizeof pname, "%s", seg->staged);
  }

  /* What holds the name goes first. An unlink refused (another user's object
   * in the sticky directory: EACCES from shm_unlink) is the error, not the
   * -EEXIST below. */
  if ((opts->flags & SHL_CREATE_REPLACE) && shm_unlink(pname) < 0 && errno != ENOENT) {
    rc = -errno;
    shl__seg_release(seg);
    return rc;
  }
  /* O_EXCL: exactly one creator wins; glibc adds O_NOFOLLOW, so a planted
   * symlink makes this fail rather than be followed. */
  int fd = shm_open(pname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    shl__seg_release(seg);
    return rc;
  }
  seg->fd = fd;
  /* From here on the name is ours: undo it on any failure. The creator role
   * is held for as long as this handle is open: openers wait while it is
   * held and know the creator died when it is free and the header not ready. */
  rc = shl__seg_role_open(seg, &seg->role, SHL__ROLE_CREATOR);
  /* A kind's own role (a stream's writer), held before anyone sees READY. */
  if (rc == 0 && extra->role) rc = shl__seg_role_open(seg, extra->role, extra->role_byte);
  if (rc < 0) goto fail;
  if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)plan.total_size) < 0) goto fail_errno;
  void *map = mmap(NULL, plan.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) goto fail_errno;
  seg->hdr = map;
  seg->map_size = plan.total_size;
  struct shl__header *h = seg->hdr;
  /* The pid first, so that an opener waiting through a long reservation can name us. */
  h->creator_pid = (int32_t)getpid();
  if (!(opts->flags & SHL_CREATE_NO_RESERVE)) {
    /* Reserve tmpfs pages now so a full /dev/shm is an error here, not a SIGBUS later. */
    rc = posix_fallocate(fd, 0, (off_t)plan.total_size);
    if (rc) {
      errno = rc;
      goto fail_errno;
    }
  }

  memcpy(h->magic, SHL__MAGIC, sizeof SHL__MAGIC);
  h->format_version = SHL__FORMAT_VERSION;
  h->header_size = SHL__HEADER_SIZE;
  h->kind = plan.kind;
  h->total_size = plan.total_size;
  h->payload_offset = plan.payload_offset;
  h->payload_size = plan.payload_size;
  h->format_offset = plan.format_offset;
  h->format_len = plan.format_len;
  h->ndim = plan.ndim;
  h->itemsize = plan.itemsize;
  h->flags = shl__mode_has_readonly_class(mode) ? SHL__HDR_WAKE_ALWAYS : 0;
  uint64_t start = 0;
  shl__process_start(h->creator_pid, &start);
  h->creator_start = start;
  h->created_ns = (uint64_t)shl__realtime_ns();
  h->ext_offset = plan.ext_offset;
  h->ext_size = plan.ext_size;
  memcpy(h->shape, plan.shape, sizeof h->shape);
  memcpy(h->strides, plan.strides, sizeof h->strides);
  memcpy((char *)map + plan.format_offset, layout->format, plan.format_len);
  /* The lock word is 0, free, as the whole new file. */
  if (extra->init_ext) extra->init_ext((char *)map + plan.ext_offset, extra->arg);
  shl__seg_fill_snapshot(seg, h, layout->format);
  seg->mode = mode;
  seg->flags = SHL__SEG_HDR_WRITABLE |
               (opts->flags & SHL_CREATE_UNLINK_ON_CLOSE ? SHL__SEG_UNLINK_ON_CLOSE : 0);
  /* Publish last: openers trust nothing before they see READY (acquire). */
  atomic_store_explicit(&h->state, SHL__STATE_READY, memory_order_release);
  *out = seg;
  return 0;

fail_errno:
  rc = -errno;
fail:
  shm_unlink(pname);
  if (extra->role) shl__role_fd_close(extra->role);
  shl__seg_release(seg);
  return rc;
}

int shl_create(shl_segment **out, const char *name, const shl_layout *layout,
               const shl_create_opts *opts) {
  /* Streams have their own API (a caller too old to set kind has none). */
  if (opts && opts->size >= offsetof(shl_create_opts, kind) + sizeof opts->kind &&
      opts->kind == SHL_KIND_STREAM)
    return SHL_E_BAD_KIND;
  return shl__segment_create(out, name, layout, opts, NULL);
}

/* ---------------------------------------------------------------- open */

/* A creator takes its role lock right after shm_open and sizes the object
 * only then: an empty object younger than this, with the role free, may be
 * a creator between those two calls. */
#define CREATOR_GRACE_NS 1000000000

/* An object that is not ready: 1 while its creator may still finish it, 0
 * when the creator is gone (its role lock is free). Cannot tell counts as alive. */
static int creator_may_finish(int fd) {
  if (shl__role_held(fd, SHL__ROLE_CREATOR) != 0) return 1;
  struct stat st;
  if (fstat(fd, &st) < 0) return 1;
  if (st.st_size > 0) return 0;
  int64_t born = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
  return shl__realtime_ns() - born < CREATOR_GRACE_NS;
}

/* Whether the owner of an object is one the opener accepts (shl_owner_policy).
 * The caller's own uid shown is checked against the real owner (shl__owns);
 * another uid named is taken as the caller sees it. */
static int owner_check(int fd, uint32_t policy, uint32_t uid) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  uid_t me = geteuid();
  bool mine = policy != SHL_OWNER_ANY && st.st_uid == me && shl__owns(fd);
  switch (policy) {
    case SHL_OWNER_SELF: return mine || st.st_uid == 0 ? 0 : SHL_E_FOREIGN_OWNER;
    case SHL_OWNER_CREATOR: return mine ? 0 : SHL_E_FOREIGN_OWNER;
    case SHL_OWNER_UID:
      return mine || (st.st_uid == uid && uid != me) ? 0 : SHL_E_FOREIGN_OWNER;
    case SHL_OWNER_ANY: return 0;
    default: return -EINVAL;
  }
}

/* 0 if pname still refers to the object open as fd (not unlinked, not
 * replaced); -ESTALE if another object has the name, -ENOENT if none has. */
static int names_object(const char *pname, int fd) {
  char path[SHL__STAGE_NAME_MAX + 16];
  struct stat mine, now;
  snprintf(path, sizeof path, "%s%s", shl__shm_dir(), pname);
  if (fstat(fd, &mine) < 0 || lstat(path, &now) < 0) return -errno;
  return mine.st_ino == now.st_ino && mine.st_dev == now.st_dev ? 0 : -ESTALE;
}

int shl__seg_names_object(const shl_segment *seg) {
  char pname[POSIX_NAME_MAX + 1];
  int rc = posix_name(seg->name, pname);
  return rc < 0 ? rc : names_object(pname, seg->fd);
}

/* shl_unlink_if_same, for a POSIX name. */
static int unlink_if_same(const char *pname, int fd) {
  int rc = names_object(pname, fd);
  if (rc < 0) return rc;
  return shm_unlink(pname) < 0 ? -errno : 0;
}

/* shm_open's errno, except that something other than a regular file at the
 * name (glibc reports a directory as EINVAL, O_NOFOLLOW a link as ELOOP) is
 * not a segment. */
static int open_error(const char *pname) {
  int err = errno;
  char path[POSIX_NAME_MAX + 16];
  struct stat st;
  snprintf(path, sizeof path, "%s%s", shl__shm_dir(), pname);
  if ((err == EINVAL || err == EISDIR || err == ELOOP) && lstat(path, &st) == 0 &&
      !S_ISREG(st.st_mode))
    return SHL_E_NOT_SHMLANE;
  return -err;
}

/* Opens the object at pname and waits until its header is ready (or the
 * deadline). -ESTALE if its creator died and the name now refers to
 * another object. */
static int open_object(shl_segment **out, const char *pname, const shl_open_opts *opts,
                       int64_t deadline, bool *writable) {
  /* A read-only opener still wants a writable header (lock, waiter count)
   * when its permissions, and the mount, allow; otherwise everything is
   * mapped read-only. */
  /* O_NONBLOCK: a FIFO planted under the name must not hang the open; it
   * changes nothing for a regular file. */
  const int oflags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  bool copy = opts->flags & SHL_OPEN_DESCRIBE; /* reads only, never maps */
  int fd = copy ? -1 : shm_open(pname, O_RDWR | oflags, 0);
  *writable = fd >= 0;
  if (copy || (fd < 0 && (opts->flags & SHL_OPEN_READONLY) && (errno == EACCES || errno == EROFS)))
    fd = shm_open(pname, O_RDONLY | oflags, 0);
  if (fd < 0) return open_error(pname);
  int rc = owner_check(fd, opts->owner, opts->owner_uid);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  shl_segment *seg = shl__seg_new(fd);
  if (!seg) {
    close(fd);
    return -ENOMEM;
  }
  seg->flags = copy ? SHL__SEG_COPY : 0;
  int64_t pause = 100000; /* 0.1 ms, doubling to 10 ms */
  while ((rc = shl__seg_try_map(seg, *writable)) == -EAGAIN) {
    if (!creator_may_finish(fd)) {
      /* The creator may have published and closed since the look. */
      rc = shl__seg_try_map(seg, *writable);
      if (rc == -EAGAIN) rc = names_object(pname, fd) == 0 ? SHL_E_CREATOR_DEAD : -ESTALE;
      break;
    }
    int64_t left = deadline - shl__monotonic_ns();
    if (left <= 0) {
      rc = SHL_E_NOT_READY;
      break;
    }
    shl__sleep_ns(pause < left ? pause : left);
    if (pause < 10000000) pause *= 2;
  }
  if (rc < 0) {
    shl__seg_release(seg);
    return rc;
  }
  *out = seg;
  return 0;
}

/* A read-only handle: its payload mapped PROT_READ. */
static void protect_payload(shl_segment *seg) {
  seg->flags |= SHL__SEG_READONLY;
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE) || !seg->payload_size) return;
  /* The payload is page-aligned: protect it alone, keep the header writable. */
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if ((uintptr_t)seg->payload % page ||
      mprotect(seg->payload, (size_t)shl__round_up(seg->payload_size, page), PROT_READ) < 0) {
    /* Page size larger than our alignment: protect everything instead. */
    mprotect(seg->hdr, seg->map_size, PROT_READ);
    seg->flags &= ~(uint32_t)SHL__SEG_HDR_WRITABLE;
  }
}

/* How often an opener waiting for a name looks for it. */
#define NAME_POLL_NS 10000000

/* Sleep one poll, cut at the deadline; false if it has passed already. */
static bool pause_until(int64_t deadline) {
  int64_t left = deadline - shl__monotonic_ns();
  if (left <= 0) return false;
  shl__sleep_ns(left < NAME_POLL_NS ? left : NAME_POLL_NS);
  return true;
}

int shl_open(shl_segment **out, const char *name, uint32_t flags, int64_t timeout_ns) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.flags = flags;
  opts.timeout_ns = timeout_ns;
  return shl_open_ex(out, name, &opts);
}

int shl_open_ex(shl_segment **out, const char *name, const shl_open_opts *user_opts) {
  char pname[POSIX_NAME_MAX + 1];
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = user_opts ? shl__opts_copy(&opts, &shl__open_opts_fields, user_opts) : 0;
  if (rc < 0) return rc;
  rc = posix_name(name, pname);
  if (rc < 0) return rc;
  uint32_t flags = opts.flags;
  int64_t timeout_ns = opts.timeout_ns;
  if (flags & ~(uint32_t)(SHL_OPEN_READONLY | SHL_OPEN_WAIT_NAME | SHL_OPEN_DESCRIBE))
    return -EINVAL;
  bool readonly = flags & (SHL_OPEN_READONLY | SHL_OPEN_DESCRIBE);

  int64_t deadline = shl__deadline(shl__monotonic_ns(), timeout_ns);
  shl_segment *seg = NULL;
  bool writable = false;
  /* A dead creator's object that was replaced meanwhile: open the new one.
   * A name not there yet, when asked to: look again until the deadline. */
  while ((rc = open_object(&seg, pname, &opts, deadline, &writable)) == -ESTALE ||
         (rc == -ENOENT && (flags & SHL_OPEN_WAIT_NAME) && pause_until(deadline))) {
  }
  if (rc < 0) return rc;
  snprintf(seg->name, sizeof seg->name, "%s", name);
  seg->flags |= writable ? SHL__SEG_HDR_WRITABLE : 0;
  if (readonly) protect_payload(seg);
  *out = seg;
  return 0;
}

int shl_dup(shl_segment **out, const shl_segment *seg) {
  if (!out || !seg) return -EINVAL;
  *out = NULL;
  int fd = fcntl(seg->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -errno;
  shl_segment *dup = shl__seg_new(fd);
  if (!dup) {
    close(fd);
    return -ENOMEM;
  }
  /* Validated afresh, as any opener does: a peer may have changed the header. */
  bool writable = (seg->flags & SHL__SEG_HDR_WRITABLE) != 0;
  dup->flags = seg->flags & SHL__SEG_COPY; /* a copy's dup is a copy */
  int rc = shl__seg_try_map(dup, writable);
  if (rc < 0) {
    shl__seg_release(dup);
    return rc == -EAGAIN ? SHL_E_NOT_READY : rc;
  }
  snprintf(dup->name, sizeof dup->name, "%s", seg->name);
  dup->flags |= writable ? SHL__SEG_HDR_WRITABLE : 0;
  if (seg->flags & SHL__SEG_READONLY) protect_payload(dup);
  *out = dup;
  return 0;
}

/* ---------------------------------------------------------------- close */

/* How long close keeps waking its own waiters, and how often. */
#define CLOSE_WAKE_NS 1000000000
#define CLOSE_WAKE_PAUSE_NS 50000

/* Calls blocked in shl_wait see `closing` once woken (other processes'
 * waiters take it as a spurious wake-up); a wake can land just before a
 * waiter sleeps, so it is repeated until none is left (microseconds).
 * Those in shl_lock see it within a slice. */
static void shut(shl_segment *seg) {
  atomic_store(&seg->closing, 1); /* seq_cst: pairs with the waiter's count, then check */
  for (int64_t until = shl__monotonic_ns() + CLOSE_WAKE_NS;
       shl__seg_sleepers(seg) && shl__monotonic_ns() < until;) {
    shl__futex_wake_all(shl__changes_word(seg->hdr));
    shl__sleep_ns(CLOSE_WAKE_PAUSE_NS);
  }
}

void shl_shutdown(shl_segment *seg) {
  if (seg) shut(seg);
}

void shl_close(shl_segment *seg) {
  if (!seg) return;
  /* A child's inherited handle never changes shared state: no unlink, and
   * the parent's lock is not ours (holder carries the fork generation). */
  bool inherited = shl__seg_inherited(seg);
  atomic_store(&seg->closing, 1);
  /* The calling thread's lock is released. Another thread's stays held, and
   * mapped, until that thread unlocks (its unlock writes the word; the last
   * one out frees); one that is gone can never unlock: its claim is marked
   * OWNER_DIED, as its death. */
  shl__lock_close(seg);
  if (seg->staged[0] && !inherited) (void)unlink_if_same(seg->staged, seg->fd); /* never swapped in */
  if ((seg->flags & SHL__SEG_UNLINK_ON_CLOSE) && !inherited) {
    char pname[POSIX_NAME_MAX + 1];
    posix_name(seg->name, pname);
    /* Only if the name still refers to our object, not a replacement. */
    (void)unlink_if_same(pname, seg->fd);
  }
  shut(seg);
  shl__seg_put(seg);
}

int shl__segment_swap_in(shl_segment *seg, int old_fd) {
  char pname[POSIX_NAME_MAX + 1];
  int rc = posix_name(seg->name, pname);
  if (rc < 0 || !seg->staged[0]) return rc < 0 ? rc : -EINVAL;
  rc = old_fd < 0 ? -ENOENT : shl__shm_exchange(seg->staged, pname);
  if (rc == -ENOENT) { /* no object there: none was, or it was removed meanwhile */
    rc = shl__shm_move_new(seg->staged, pname);
    if (rc == -EEXIST) rc = -ESTALE; /* another object came */
  } else if (rc == 0 && names_object(seg->staged, old_fd) != 0) {
    /* What the name held, now under the staged name, is not the old
     * object but another's: it goes back. */
    shl__shm_exchange(seg->staged, pname);
    rc = -ESTALE;
  } else if (rc == 0) {
    shm_unlink(seg->staged); /* the old object */
  }
  if (rc == 0) seg->staged[0] = '\0';
  return rc;
}

/* Staged objects of `name` left by processes killed before they swapped them
 * in: owned by this user (the sticky directory lets no one else remove them)
 * and with their writer and creator roles free. Best effort. */
void shl__stage_sweep(const char *name) {
  char prefix[SHL__STAGE_NAME_MAX];
  int plen = snprintf(prefix, sizeof prefix, "%s%s.", &SHL__STAGE_PREFIX[1], name);
  DIR *dir = opendir(shl__shm_dir());
  if (!dir || plen <= 0) {
    if (dir) closedir(dir);
    return;
  }
  for (struct dirent *e; (e = readdir(dir)) != NULL;) {
    char pname[SHL__STAGE_NAME_MAX];
    if (strncmp(e->d_name, prefix, (size_t)plen) != 0 ||
        snprintf(pname, sizeof pname, "/%s", e->d_name) >= (int)sizeof pname)
      continue;
    int fd = shm_open(pname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && shl__owns(fd) &&
        shl__role_held(fd, SHL__ROLE_WRITER) == 0 && shl__role_held(fd, SHL__ROLE_CREATOR) == 0)
      (void)unlink_if_same(pname, fd);
    close(fd);
  }
  closedir(dir);
}

int shl_unlink(const char *name) {
  char pname[POSIX_NAME_MAX + 1];
  int rc = posix_name(name, pname);
  if (rc < 0) return rc;
  return shm_unlink(pname) < 0 ? -errno : 0;
}

int shl_unlink_if_same(const char *name, int fd) {
  char pname[POSIX_NAME_MAX + 1];
  int rc = posix_name(name, pname);
  if (rc < 0) return rc;
  return unlink_if_same(pname, fd);
}

/* ---------------------------------------------------------------- queries */

const char *shl_name(const shl_segment *seg) { return seg->name; }
uint32_t shl_kind(const shl_segment *seg) { return seg->kind; }
int shl_is_readonly(const shl_segment *seg) { return (seg->flags & SHL__SEG_READONLY) != 0; }
void *shl_payload(const shl_segment *seg) { return seg->payload; }
uint64_t shl_payload_size(const shl_segment *seg) { return seg->payload_size; }
void shl_get_layout(const shl_segment *seg, shl_layout *out) { *out = seg->layout; }

int shl_get_info(const shl_segment *seg, shl_info *out) {
  struct stat st;
  shl_info info = SHL_INFO_INIT;
  if (fstat(seg->fd, &st) < 0) return -errno;
  const struct shl__header *h = seg->hdr;
  snprintf(info.name, sizeof info.name, "%s", seg->name);
  info.kind = seg->kind;
  info.format_version = h->format_version;
  info.total_size = h->total_size;
  info.payload_size = seg->payload_size;
  info.changes = shl_changes(seg);
  info.creator_pid = h->creator_pid;
  /* The creator holds its role lock for as long as its creating handle is open. */
  int held = shl__role_held(seg->fd, SHL__ROLE_CREATOR);
  info.creator_alive = held < 0 ? -1 : held;
  info.created_ns = h->created_ns;
  info.mode = (uint32_t)(st.st_mode & 07777);
  info.uid = (uint32_t)st.st_uid;
  info.gid = (uint32_t)st.st_gid;
  return shl__info_copy(out, &info, sizeof info);
}

int shl_list(int (*fn)(const char *name, void *arg), void *arg) {
  DIR *dir = opendir(shl__shm_dir());
  if (!dir) return -errno;
  const char *prefix = &SHL_POSIX_PREFIX[1]; /* directory entries carry no '/' */
  size_t plen = strlen(prefix);
  int count = 0, rc = 0;
  struct dirent *ent;
  while ((ent = readdir(dir)) != NULL) {
    if (strncmp(ent->d_name, prefix, plen) != 0) continue;
    const char *name = ent->d_name + plen;
    if (shl_name_check(name) < 0) continue;
    count++;
    if (fn && (rc = fn(name, arg)) < 0) break;
  }
  closedir(dir);
  return rc < 0 ? rc : count;
}
