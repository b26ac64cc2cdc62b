/* shmlane: named, self-describing shared memory for unrelated processes.
 *
 * Conventions (every function):
 *   - returns 0 (or a non-negative count/value) on success;
 *   - returns a negative errno (-ENOENT, -EEXIST, -EACCES, -ETIMEDOUT, ...) or a
 *     negative library code (SHL_E_*, outside the errno range) on failure;
 *   - shl_strerror() and shl_err_name() describe every code.
 * Handles are opaque; every *_close() accepts NULL.
 * Timeouts are in nanoseconds: < 0 waits forever, 0 does not block.
 *
 * Structs that can grow: every option and info struct starts with `size` and
 * must be initialised with its SHL_*_INIT macro (or `size` set to its sizeof;
 * a size too small to hold `size` itself, such as 0, is -EINVAL). Fields are
 * only ever added at the end. For options the library reads only the fields
 * that fit in the caller's `size` and treats the rest as zero (so a program
 * built against an older, smaller struct keeps working), and rejects with
 * -E2BIG a larger struct whose unknown tail is not all zero (a newer caller
 * asking for something this library cannot do). Info structs are filled only
 * as far as the caller's `size` reaches; a newer caller's extra fields are
 * zeroed.
 *
 * Handles belong to the process that opened them. In a child created by
 * fork(), an inherited handle never changes shared state when it is closed
 * (no unlock of the parent's lock, unpin, role release or unlink); calls that
 * would act on shared state for it return SHL_E_FORKED. Plain segment
 * payloads stay readable and writable through the inherited mapping, and an
 * inherited segment may lock (a child is a process of its own), unlock its
 * own lock, notify and wait; the parent's lock is never the child's to
 * unlock (-EPERM).
 *
 * Threads. Calls that take no handle (shl_create, shl_open(_ex), shl_unlink,
 * shl_unlink_if_same, shl_list, shl_name_check, shl_format_itemsize,
 * shl_strerror, shl_err_name, shl_version_string, shl_writer_open,
 * shl_reader_open(_ex)) may run in any number of threads at once.
 *   - A segment handle (shl_segment) may be used by several threads at once:
 *     every call on it is thread-safe. shl_close() may run while other threads
 *     hold the segment's lock through the handle or are blocked in shl_lock,
 *     shl_trylock, shl_wait or shl_wait_ex on it (see shl_close); no other
 *     call may race with shl_close, and no call may start after it returned,
 *     except shl_unlock by a thread that holds the lock.
 *   - A stream handle (shl_writer, shl_reader) is single-threaded: calls on
 *     one handle, shl_*_close included, must not overlap (a second thread
 *     needs a lock of its own, or a handle of its own). Different handles are
 *     independent, in one process or many, of one stream or several. The
 *     segment of a stream handle (shl_writer_segment, shl_reader_segment) is
 *     the handle's: use it only as the handle's calls may be used, and never
 *     shl_close it. shl_stream_get_info on any segment handle is as
 *     thread-safe as the segment calls.
 */
#ifndef SHMLANE_H
#define SHMLANE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHL_VERSION_MAJOR 0
#define SHL_VERSION_MINOR 1
#define SHL_VERSION_PATCH 0
#define SHL_VERSION_STRING "0.1.0"

/* Runtime library version as MAJOR*10000 + MINOR*100 + PATCH. */
unsigned shl_version_number(void);
const char *shl_version_string(void);

/* ---------------------------------------------------------------- errors */

/* Library codes: negative, below every errno value. */
#define SHL_ERRNO_MAP(X)                                                          \
  X(NOT_SHMLANE, -30001, "not a shmlane segment (foreign file or bad magic)")   \
  X(VERSION, -30002, "unsupported segment format version")                      \
  X(NOT_READY, -30003, "segment is still being initialised by its creator")     \
  X(TRUNCATED, -30004, "segment is smaller than its header says")               \
  X(BAD_HEADER, -30005, "segment header offsets or sizes are out of bounds")    \
  X(BAD_KIND, -30006, "segment kind is unknown or not the expected one")        \
  X(BAD_SHAPE, -30007, "shape is invalid or does not fit in the payload")       \
  X(BAD_STRIDES, -30008, "strides reach outside the payload")                   \
  X(BAD_FORMAT, -30009, "element format is malformed or beyond 4095 bytes or 256 items") \
  X(ITEMSIZE, -30010, "element format does not match the itemsize")             \
  X(BAD_NAME, -30011, "invalid segment name")                                   \
  X(OWNER_DEAD, -30012, "lock acquired: previous owner died, data may be inconsistent") \
  X(READONLY, -30013, "segment was opened without write access")                \
  X(WRITER_GONE, -30014, "the stream's writer died and no writer took over")           \
  X(FOREIGN_OWNER, -30015, "object is owned by a user this call does not accept")        \
  X(FORKED, -30016, "handle was inherited across fork(): open it again in this process") \
  X(PIN_LIMIT, -30017, "reader holds its limit of pinned samples: release one first")    \
  X(SLOTS_PINNED, -30018, "no free slot: readers pin every slot the writer could reuse")  \
  X(CREATOR_DEAD, -30019, "the creator died before the segment was ready")               \
  X(WRITER_CLOSED, -30020, "the stream's writer closed it and no writer took over")      \
  X(CLOSED, -30021, "the handle was closed by another thread during the call")

enum {
#define SHL__ERR_ENUM(name, value, text) SHL_E_##name = (value),
  SHL_ERRNO_MAP(SHL__ERR_ENUM)
#undef SHL__ERR_ENUM
};

/* Message for any code this library returns (errno or SHL_E_*). Never NULL. */
const char *shl_strerror(int code);
/* Symbolic name: "ENOENT", "SHL_E_TRUNCATED", ... Never NULL. */
const char *shl_err_name(int code);

/* ---------------------------------------------------------------- names */

/* A name is 1..SHL_NAME_MAX characters from [A-Za-z0-9._-], starting with a
 * letter or digit. It maps to the POSIX shared-memory object SHL_POSIX_PREFIX
 * followed by the name ("/shl.calib"), which is 31 characters at most. */
#define SHL_NAME_MAX 26
#define SHL_POSIX_PREFIX "/shl."

/* 0 if valid, SHL_E_BAD_NAME otherwise. */
int shl_name_check(const char *name);

/* ---------------------------------------------------------------- layout */

#define SHL_MAX_NDIM 8
#define SHL_FORMAT_MAX 4095 /* bytes, without the terminating NUL */
/* Items a format may hold, counted at every nesting depth: each scalar, pad
 * run, sub-array and struct counts once ("3d" and "(2,3)f" are one item
 * each). Keeps every reader's parse cheap, NumPy's included. */
#define SHL_FORMAT_MAX_FIELDS 256 /* SHL_E_BAD_FORMAT's text cites both limits */

enum shl_kind {
  SHL_KIND_ARRAY = 1,  /* ndim >= 0 array of elements */
  SHL_KIND_STRUCT = 2, /* one structured element (ndim 0), typically a C struct */
  SHL_KIND_STREAM = 3  /* ring of slots; see the stream API */
};

/* What the payload is. `format` is a PEP 3118 / struct-module element format:
 * "<d", "B", "T{<i:x:<d:y:}", with byte order, padding ('x'), nested structs
 * and sub-arrays ("(3)<f"). `strides` are in bytes; all zero means C order. */
typedef struct shl_layout {
  const char *format;
  uint64_t itemsize; /* 0: computed from format */
  uint32_t ndim;
  uint64_t shape[SHL_MAX_NDIM];
  int64_t strides[SHL_MAX_NDIM];
} shl_layout;

/* Parse a format string: returns its itemsize (> 0), or SHL_E_BAD_FORMAT
 * (also beyond SHL_FORMAT_MAX bytes or SHL_FORMAT_MAX_FIELDS items). */
int64_t shl_format_itemsize(const char *format);

/* ---------------------------------------------------------------- segments */

typedef struct shl_segment shl_segment;

enum shl_create_flags {
  SHL_CREATE_REPLACE = 1u << 0,         /* unlink an existing segment of that name first */
  SHL_CREATE_UNLINK_ON_CLOSE = 1u << 1, /* creator's shl_close() unlinks the name */
  SHL_CREATE_NO_RESERVE = 1u << 2       /* skip posix_fallocate (sparse payload) */
};

typedef struct shl_create_opts {
  uint32_t size;  /* sizeof(shl_create_opts): use SHL_CREATE_OPTS_INIT */
  uint32_t kind;  /* 0: SHL_KIND_STRUCT if the format is a struct and ndim is 0, else ARRAY */
  uint32_t mode;  /* permission bits; 0 means 0600 */
  uint32_t flags; /* enum shl_create_flags */
} shl_create_opts;

#define SHL_CREATE_OPTS_INIT {.size = sizeof(shl_create_opts)}

enum shl_open_flags {
  SHL_OPEN_READONLY = 1u << 0 /* payload mapped PROT_READ; waiting still works */
};

/* Whose objects an opener accepts. /dev/shm is shared by every local user,
 * who may create any name first: by default only objects owned by this
 * process's effective user or by root are opened; anything else gives
 * SHL_E_FOREIGN_OWNER. Creating, and taking over a stream as its writer, never
 * adopt an object owned by another user, whatever the policy. */
enum shl_owner_policy {
  SHL_OWNER_SELF = 0, /* this effective uid or root (the default) */
  SHL_OWNER_UID = 1,  /* exactly owner_uid (or this effective uid) */
  SHL_OWNER_ANY = 2,  /* any owner: an explicit choice to read another user's object */
  /* Exactly this effective uid (root's objects too are foreign to others):
   * what opening in place of creating requires (create-or-open, takeover). */
  SHL_OWNER_CREATOR = 3
};

typedef struct shl_open_opts {
  uint32_t size;       /* sizeof(shl_open_opts): use SHL_OPEN_OPTS_INIT */
  uint32_t flags;      /* enum shl_open_flags */
  int64_t timeout_ns;  /* wait this long for a creator still initialising (while it lives) */
  uint32_t owner;      /* enum shl_owner_policy */
  uint32_t owner_uid;  /* with SHL_OWNER_UID */
} shl_open_opts;

#define SHL_OPEN_OPTS_INIT {.size = sizeof(shl_open_opts), .timeout_ns = SHL_OPEN_DEFAULT_TIMEOUT_NS}

/* Default time an opener waits for a creator that is still initialising (and
 * alive): long enough for a multi-GiB reservation (4 GiB takes about 1 s). */
#define SHL_OPEN_DEFAULT_TIMEOUT_NS 10000000000LL

/* Create a segment and publish it ready. opts may be NULL. The payload is
 * zero-filled. Fails with -EEXIST if the name exists (unless REPLACE). */
int shl_create(shl_segment **out, const char *name, const shl_layout *layout,
               const shl_create_opts *opts);

/* Open an existing segment by name and validate its header. Waits up to
 * timeout_ns for a creator that is still initialising while it lives
 * (SHL_E_NOT_READY after); SHL_E_CREATOR_DEAD at once if it died before the
 * segment was ready. SHL_E_NOT_SHMLANE if the name holds something else
 * (a directory, a FIFO, a foreign file); SHL_E_FOREIGN_OWNER for an owner
 * the policy does not accept (shl_owner_policy). */
int shl_open(shl_segment **out, const char *name, uint32_t flags, int64_t timeout_ns);
/* shl_open with options; opts NULL means SHL_OPEN_OPTS_INIT. */
int shl_open_ex(shl_segment **out, const char *name, const shl_open_opts *opts);

/* Unmap and free. The segment stays in place unless the creator asked for
 * SHL_CREATE_UNLINK_ON_CLOSE. Accepts NULL. Releases the lock if the calling
 * thread holds it through this handle. If another thread holds it, the
 * mapping stays (the mutex is on that thread's robust list) until that
 * thread calls shl_unlock, which completes the close; if that thread exits
 * still holding it, the kernel marks it dead and the next locker anywhere
 * gets SHL_E_OWNER_DEAD. Calls blocked in shl_lock/shl_trylock/shl_wait(_ex)
 * on the handle return SHL_E_CLOSED; the last one out frees. In a forked
 * child, closing an inherited handle changes nothing shared. */
void shl_close(shl_segment *seg);

/* Remove a name. Processes that have it open keep their mapping. */
int shl_unlink(const char *name);

/* Remove a name only while it still refers to the object open as fd (any
 * descriptor of the segment's file, O_PATH included), not to one created
 * under the name since: 0 removed, -ESTALE another object has the name now,
 * -ENOENT none has. For tools that judge an object, then remove it (shmlane
 * gc); SHL_CREATE_UNLINK_ON_CLOSE uses it too. POSIX cannot unlink by
 * identity: microseconds remain between the check and the unlink. */
int shl_unlink_if_same(const char *name, int fd);

const char *shl_name(const shl_segment *seg);
uint32_t shl_kind(const shl_segment *seg);
int shl_is_readonly(const shl_segment *seg);
void *shl_payload(const shl_segment *seg);
uint64_t shl_payload_size(const shl_segment *seg);

/* The layout recorded in the header. out->format points into seg and lives
 * as long as seg. */
void shl_get_layout(const shl_segment *seg, shl_layout *out);

/* Output structs that can grow: set `size` (SHL_INFO_INIT); the library fills
 * only the fields that fit in it and leaves `size` as it was. */
typedef struct shl_info {
  uint32_t size; /* sizeof(shl_info): use SHL_INFO_INIT */
  char name[SHL_NAME_MAX + 1];
  uint32_t kind;
  uint32_t format_version;
  uint64_t total_size;
  uint64_t payload_size;
  uint64_t version;     /* wait/notify counter */
  int32_t creator_pid;
  int creator_alive;    /* the creator still has it open (holds its creator role lock):
                         * 1 yes, 0 no (closed, exited or killed), -1 cannot tell */
  uint64_t created_ns;  /* CLOCK_REALTIME */
  uint32_t mode;        /* permission bits of the object */
  uint32_t uid;
} shl_info;

#define SHL_INFO_INIT {.size = sizeof(shl_info)}

int shl_get_info(const shl_segment *seg, shl_info *out);

/* Call fn(name, arg) for each entry of the shared-memory directory whose
 * name carries the shmlane prefix and is a valid segment name, in directory
 * order. fn returns 0 to go on, or a negative code to stop the walk, which
 * is then returned. Returns the number of entries seen otherwise. Entries are
 * not opened. */
int shl_list(int (*fn)(const char *name, void *arg), void *arg);

/* ---------------------------------------------------------------- lock */

/* Robust, process-shared lock, one per segment.
 * 0: locked. SHL_E_OWNER_DEAD: locked, and the previous holder died while
 * holding it; the lock is consistent again but the data it guards may be
 * half-written. -ETIMEDOUT: not acquired. -EBUSY (trylock): held elsewhere.
 * -EDEADLK: this thread holds it. SHL_E_READONLY: opened without write access.
 * SHL_E_CLOSED: another thread closed the handle meanwhile (not acquired).
 * shl_unlock: only the thread that locked through this handle, in this
 * process (-EPERM for any other, and for a parent's lock in a forked child). */
int shl_lock(shl_segment *seg, int64_t timeout_ns);
int shl_trylock(shl_segment *seg);
int shl_unlock(shl_segment *seg);

/* ---------------------------------------------------------------- wait/notify */

/* Current value of the segment's change counter (starts at 0). */
uint64_t shl_version(const shl_segment *seg);

/* Bump the counter and wake every waiter in every process. Returns the new
 * version in *out (may be NULL). */
int shl_notify(shl_segment *seg, uint64_t *out);

enum shl_wait_flags {
  SHL_WAIT_INTERRUPTIBLE = 1u << 0 /* return -EINTR when a signal arrives */
};

typedef struct shl_wait_opts {
  uint32_t size;    /* sizeof(shl_wait_opts): use SHL_WAIT_OPTS_INIT */
  uint32_t flags;   /* enum shl_wait_flags */
  uint32_t spin_ns; /* spin up to this long before sleeping (capped at 1 ms) */
} shl_wait_opts;

#define SHL_WAIT_OPTS_INIT {.size = sizeof(shl_wait_opts)}

/* Wait until the version differs from `since`, or timeout. On success stores
 * the version seen in *out (may be NULL). -ETIMEDOUT on time-out;
 * SHL_E_CLOSED if another thread closed the handle meanwhile. Spurious
 * wake-ups and (without SHL_WAIT_INTERRUPTIBLE) signals never end it early. */
int shl_wait(shl_segment *seg, uint64_t since, int64_t timeout_ns, uint64_t *out);
int shl_wait_ex(shl_segment *seg, uint64_t since, int64_t timeout_ns,
                const shl_wait_opts *opts, uint64_t *out);

/* ---------------------------------------------------------------- streams */

/* A stream is a segment of kind SHL_KIND_STREAM holding a ring of `slots`
 * frames of one layout, written by one writer at a time and read by up to
 * `max_readers` readers. The writer fills a loaned slot in place and
 * publishes it; a reader pins a published slot read-only until it releases
 * it, so no slot a reader holds is ever rewritten. A killed writer's loan is
 * never seen; a killed reader's pins are reclaimed. Whether a writer or
 * reader lives is known from a lock the kernel holds for it (in any PID
 * namespace), never from its pid. */
typedef struct shl_writer shl_writer;
typedef struct shl_reader shl_reader;

#define SHL_STREAM_MAX_SLOTS 64
#define SHL_STREAM_MAX_READERS 256

enum shl_stream_flags {
  SHL_STREAM_BLOCK = 1u << 0 /* writer waits for live `all` readers instead of lapping them */
};

typedef struct shl_stream_opts {
  uint32_t size;        /* sizeof(shl_stream_opts): use SHL_STREAM_OPTS_INIT */
  uint32_t slots;       /* 2..SHL_STREAM_MAX_SLOTS; 0 means 8 */
  uint32_t max_readers; /* 1..SHL_STREAM_MAX_READERS; 0 means 64 */
  uint32_t flags;       /* enum shl_stream_flags */
  uint32_t mode;        /* permission bits; 0 means 0600 */
} shl_stream_opts;

#define SHL_STREAM_OPTS_INIT {.size = sizeof(shl_stream_opts)}

/* Create the stream, or take over an existing one with the same frame layout
 * whose writer is gone (readers keep their place). -EBUSY if a live writer
 * holds it; SHL_E_BAD_KIND if the name is not a stream; -EINVAL if its frame
 * layout or slot count differ; SHL_E_FOREIGN_OWNER if another user owns it
 * (never adopted). opts may be NULL. */
int shl_writer_open(shl_writer **out, const char *name, const shl_layout *frame,
                    const shl_stream_opts *opts);
/* Give up the writer role (a held loan is discarded); the stream stays.
 * Readers then get SHL_E_WRITER_CLOSED, not SHL_E_WRITER_GONE. */
void shl_writer_close(shl_writer *w);
/* Loan a free slot: its index (>= 0) and *frame pointing to it. Waits up to
 * timeout_ns only with SHL_STREAM_BLOCK or while every slot is pinned; then
 * SHL_E_SLOTS_PINNED if readers pin every slot but the newest
 * (shl_writer_pinned_by names them), else -ETIMEDOUT. -EBUSY if a loan is
 * already outstanding. */
int shl_writer_loan(shl_writer *w, void **frame, int64_t timeout_ns);
/* Publish the loaned slot: stamps sequence number and time, wakes readers. */
int shl_writer_publish(shl_writer *w, uint64_t *seq);
/* Drop the loan without publishing. */
int shl_writer_discard(shl_writer *w);
/* After SHL_E_SLOTS_PINNED: the pids (as their readers recorded them) of the
 * readers that pin slots, up to max; returns how many there are. */
int shl_writer_pinned_by(const shl_writer *w, int32_t *pids, uint32_t max);
/* The sequence number the next publish will stamp (for frames that carry it). */
uint64_t shl_writer_next_seq(const shl_writer *w);
shl_segment *shl_writer_segment(const shl_writer *w);

enum shl_recv_mode {
  SHL_RECV_LATEST = 0, /* newest frame; older ones are skipped */
  SHL_RECV_ALL = 1     /* every frame in order; laps are counted in `lost` */
};

typedef struct shl_sample {
  const void *data;      /* read-only, valid until shl_reader_release */
  uint64_t seq;          /* 1, 2, ... per stream */
  uint64_t timestamp_ns; /* CLOCK_MONOTONIC at publish */
  uint64_t lost;         /* frames skipped before this one (SHL_RECV_ALL) */
  uint32_t slot;
} shl_sample;

/* Open a stream as a reader; waits up to timeout_ns for it to appear. */
int shl_reader_open(shl_reader **out, const char *name, uint32_t mode, int64_t timeout_ns);

typedef struct shl_reader_opts {
  uint32_t size;       /* sizeof(shl_reader_opts): use SHL_READER_OPTS_INIT */
  uint32_t mode;       /* enum shl_recv_mode */
  int64_t timeout_ns;  /* wait this long for the stream to appear */
  uint32_t max_pinned; /* samples this reader may hold at once; 0: the default (see below) */
  uint32_t owner;      /* enum shl_owner_policy, as for shl_open_opts */
  uint32_t owner_uid;
  uint32_t reserved;   /* zero */
} shl_reader_opts;

#define SHL_READER_OPTS_INIT {.size = sizeof(shl_reader_opts), .timeout_ns = -1}

/* shl_reader_open with options; opts NULL means SHL_READER_OPTS_INIT. A
 * receive that would hold more than max_pinned samples returns
 * SHL_E_PIN_LIMIT; the default is half the slots less one, but 2 from 4 slots
 * on (a loop holds the previous sample while it receives the next) and 1 below,
 * so one reader that keeps its samples never starves the writer. */
int shl_reader_open_ex(shl_reader **out, const char *name, const shl_reader_opts *opts);
void shl_reader_close(shl_reader *r);
/* Pin the next frame. -ETIMEDOUT if none came in time; when nothing new is
 * left and no live writer holds the stream (noticed within 100 ms):
 * SHL_E_WRITER_CLOSED if the last writer closed it, SHL_E_WRITER_GONE if it
 * died. SHL_E_PIN_LIMIT, pinning nothing, while the reader holds max_pinned
 * samples. Flags as for shl_wait_ex (SHL_WAIT_INTERRUPTIBLE). */
int shl_reader_receive(shl_reader *r, shl_sample *out, int64_t timeout_ns, uint32_t flags);
int shl_reader_release(shl_reader *r, const shl_sample *sample);
/* Make receive poll up to spin_ns (capped at 1 ms, as shl_wait_opts) before
 * sleeping: a frame published meanwhile arrives without a kernel wake-up,
 * and its publish needs no system call. 0 (the default): sleep at once. */
void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns);
shl_segment *shl_reader_segment(const shl_reader *r);

typedef struct shl_stream_info {
  uint32_t size; /* sizeof(shl_stream_info): use SHL_STREAM_INFO_INIT */
  uint32_t slots, max_readers, flags;
  uint32_t readers_alive;
  int32_t writer_pid;  /* 0 if none */
  int writer_alive;    /* 1, 0, or -1 unknown */
  uint64_t last_seq;
  uint64_t last_timestamp_ns;
  uint64_t slot_stride; /* bytes between slots in the payload */
} shl_stream_info;

#define SHL_STREAM_INFO_INIT {.size = sizeof(shl_stream_info)}

/* Describe a stream segment (any open handle of kind SHL_KIND_STREAM). */
int shl_stream_get_info(const shl_segment *seg, shl_stream_info *out);

#ifdef __cplusplus
}
#endif
#endif /* SHMLANE_H */
