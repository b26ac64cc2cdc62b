/* Internal interfaces between the core's files. Names carry the shl__ prefix. */
#ifndef SHL_INTERNAL_H
#define SHL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm_layout.h"
#include "shmlane.h"

/* Test programs that include a core file may run code at these points
 * (test_stream_roles, test_stream_hostile); nothing otherwise. */
#ifndef SHL__TEST_POINT
#define SHL__TEST_POINT(name) ((void)0)
#endif

enum shl__seg_flags {
  SHL__SEG_READONLY = 1u << 0,        /* payload mapped PROT_READ */
  SHL__SEG_HDR_WRITABLE = 1u << 1,    /* header mapped writable: may lock, register as waiter */
  SHL__SEG_UNLINK_ON_CLOSE = 1u << 2,
  /* hdr is a private copy of the object up to its payload (SHL_OPEN_DESCRIBE):
   * no payload, nothing shared to lock, notify or wait on. */
  SHL__SEG_COPY = 1u << 3,
};

/* A staged segment's POSIX name: "/.shl-stage." + name + "." + pid + "." +
 * 16 random hex digits (shl__segment_create). */
#define SHL__STAGE_PREFIX "/.shl-stage."
#define SHL__STAGE_NAME_MAX 80

/* A descriptor for role locks (roles.c): its open file description holds them. */
struct shl__role_fd {
  int fd; /* -1: none, or closed in a forked child */
  struct shl__role_fd *prev, *next;
};

struct shl_segment {
  struct shl__header *hdr; /* start of the mapping */
  size_t map_size;         /* what fstat reported at map time; never touch beyond */
  unsigned char *payload;
  uint64_t payload_size;
  unsigned char *ext; /* kind-specific area (streams), NULL if none */
  uint64_t ext_size;
  int fd;             /* kept for fstat (info) and identity (unlink-on-close) */
  uint32_t kind;
  uint32_t flags;     /* enum shl__seg_flags */
  uint32_t hdr_flags; /* snapshot of enum shl__header_flags; WAKE_ALWAYS also from the mode at open */
  uint32_t mode;      /* the object's permission bits when this handle made or opened it */
  /* Process-local lifetime: the mapping outlives every thread that holds
   * the lock through this handle (its unlock writes the word) and every call
   * blocked in it. The counted words carry the fork generation in their high
   * 32 bits: a parent's counts and holder mean nothing in a child. */
  _Atomic uint64_t refs;   /* count: 1 while open, +1 per blocking call inside, +1 while locked */
  _Atomic uint64_t holder; /* kernel thread id holding the lock through this handle, 0 none */
  _Atomic int closing;     /* shl_close() was called: blocked calls return SHL_E_CLOSED */
  _Atomic uint64_t sleepers; /* count: threads between their `closing` check and the futex's return */
  unsigned fork_gen;       /* shl__fork_generation() at open: another value means inherited */
  /* The lock (lock.c): this handle's lock keeper, started at its first lock. */
  struct shl__keeper *_Atomic lock_keeper; /* NULL: none yet, or none (lock_nokeeper) */
  _Atomic bool lock_nokeeper;  /* the kernel refused a keeper its robust list: no death recovery */
  _Atomic uint32_t *lock_word; /* &hdr->lock, the keeper's one word */
  _Atomic uint32_t lock_tid;   /* the id the holder stored in the word */
  pthread_mutex_t lock_ops;    /* orders the keeper's start and list steps */
  struct shl__role_fd role; /* the creator's: holds SHL__ROLE_CREATOR while this handle is open */
  char name[SHL_NAME_MAX + 1];
  char staged[SHL__STAGE_NAME_MAX]; /* POSIX name while staged (shl__extra), else "" */
  /* Private snapshot of the validated layout: a peer rewriting the header
   * later cannot change what this process believes. */
  shl_layout layout;
  char format[SHL_FORMAT_MAX + 1];
};

/* Any sleeper on a shared word, where the mode lets other users open the
 * segment (as it was at open: only the owner may change it, and the owner's
 * processes are trusted): a process with a mapping can move every sleeper
 * off a word to one of its own (FUTEX_CMP_REQUEUE needs only a readable
 * mapping, and works on futex_waitv's words), one who may write can clear a
 * count or flag that tells a waker whether to wake (`waiters`,
 * `writer_waiting`); neither reaches a sleeper. Each sleep is cut at this,
 * as the lock's slice. (Wakers do not wake regardless of the count instead:
 * one who can clear it can requeue too, and a wake with no sleeper costs a
 * system call.) */
#define SHL__EXPOSED_SLICE_NS 20000000
static inline bool shl__seg_exposed(const shl_segment *seg) { return seg->mode & 077; }

/* segment.c: create with a kind-specific area, initialised by init_ext before
 * the segment is published, and a payload of at least payload_size bytes.
 * With `role`, the creator opens it and takes the role lock `role_byte`
 * before publishing (a stream's writer: no opener ever sees it without one). */
struct shl__extra {
  uint64_t ext_size;
  uint64_t payload_size; /* 0: what the layout needs */
  void (*init_ext)(void *ext, void *arg);
  void *arg;
  struct shl__role_fd *role; /* NULL: none */
  uint64_t role_byte;
  /* Built under a private name, for shl__segment_swap_in to put under its
   * own; removed by shl_close until then. */
  bool staged;
};
int shl__segment_create(shl_segment **out, const char *name, const shl_layout *layout,
                        const shl_create_opts *opts, const struct shl__extra *extra);
/* Puts a staged segment under its name, atomically: in place of the object
 * open as old_fd (which is removed), or where no object is (old_fd < 0, or
 * that object was removed from the name meanwhile). -ESTALE if the name
 * holds another object (or, with old_fd < 0, any), and then nothing changed. */
int shl__segment_swap_in(shl_segment *seg, int old_fd);
/* Removes staged objects of `name` that no live process is building. */
void shl__stage_sweep(const char *name);
/* segment_read.c: a class of users (group, others) may read but not write. */
bool shl__mode_has_readonly_class(uint32_t mode);
/* segment_read.c: fills the handle's private snapshot of the layout from a
 * validated header and the format (copied before it is checked). */
void shl__seg_fill_snapshot(shl_segment *seg, const struct shl__header *h, const char *format);
/* One look at the object open as seg->fd (mapped, or copied for
 * SHL__SEG_COPY): 0 with a validated header, -EAGAIN while its creator is
 * still initialising it, or an error. */
int shl__seg_try_map(shl_segment *seg, bool writable);
/* Unmaps, or frees the copy. */
void shl__seg_unplace(shl_segment *seg);
/* 0 if the segment's name still refers to its object; -ESTALE if another
 * object has the name now, -ENOENT if none has. */
int shl__seg_names_object(const shl_segment *seg);
/* notify.c: shl_wait_ex with opts already copied, that also returns 1 as
 * soon as any of the nalso (< SHL__WAITV_MAX) words also[i].word differs from
 * also[i].expected; only with futex_waitv usable, unless nalso is 0. */
struct shl__also {
  _Atomic uint32_t *word;
  uint32_t expected;
  /* A word in this process's own memory, woken by shl__futex_wake_private
   * alone: the kernel keys it by address, with no page lookup. */
  bool private_;
};
int shl__wait_also(shl_segment *seg, uint64_t since, int64_t timeout_ns, const shl_wait_opts *opts,
                   const struct shl__also *also, unsigned nalso, uint64_t *out);

/* handle.c: a segment handle's lifetime in this process. */
/* A handle of the object open as fd (-1: none yet), counted once (open). */
shl_segment *shl__seg_new(int fd);
/* Unmaps and frees at once, whatever the count: for a handle never published. */
void shl__seg_release(shl_segment *seg);
/* A blocking call enters the handle (SHL_E_CLOSED once shl_close() was
 * called) and puts it back when done; the last put frees the handle. */
int shl__seg_enter(shl_segment *seg);
void shl__seg_put(shl_segment *seg);
/* Threads of this process asleep in a wait on the handle (those of a
 * parent's are not: they do not exist here): add delta (+1 before the
 * `closing` check, -1 after the futex returned), or read the count. */
void shl__seg_sleepers_add(shl_segment *seg, int delta);
uint32_t shl__seg_sleepers(shl_segment *seg);
/* This thread, with the fork generation: the word stored in `holder`. */
uint64_t shl__seg_self(void);
/* lock.c, for shl_close: releases the lock if the calling thread holds it
 * through seg; marks it its holder's death (OWNER_DIED) if the thread of
 * this process that holds it through seg is gone. */
void shl__lock_close(shl_segment *seg);
/* Opens a role descriptor of the caller's own (r) on the object seg holds,
 * under the POSIX name it has now (the staged one while staged), and takes
 * the role `byte` unless it is SHL__ROLE_NONE: 0, -EBUSY while another holds
 * it, -ESTALE if the name refers to another object now, -errno. On failure
 * r holds nothing. */
#define SHL__ROLE_NONE 0 /* byte 0 is the header's, never a role */
int shl__seg_role_open(const shl_segment *seg, struct shl__role_fd *r, uint64_t byte);

/* error.c: an option struct as this library has it: its size, and where
 * each of its fields after `size` ends, in order. */
struct shl__fields {
  uint32_t size;
  uint8_t n;
  uint8_t end[15];
};
extern const struct shl__fields shl__create_opts_fields, shl__open_opts_fields,
    shl__wait_opts_fields, shl__stream_opts_fields, shl__reader_opts_fields;
/* error.c: copy a caller's growable struct `src` (its first field is its
 * size) into `dst`, a struct of `fields`, already holding the defaults:
 * only whole fields, so a field past the caller's size, or cut by it, keeps
 * its default; -EINVAL if the size is too small to hold `size`; -E2BIG if
 * the caller's struct is larger and its unknown tail is not zero. */
int shl__opts_copy(void *dst, const struct shl__fields *fields, const void *src);
/* Fill a caller's growable output struct `dst` (its `size` set by the caller)
 * from this library's complete `src`: only as far as the caller's size
 * reaches, zeroing a newer caller's extra tail; `size` is left alone. -EINVAL
 * if the caller's size cannot even hold `size`. */
int shl__info_copy(void *dst, const void *src, size_t src_size);

/* format.c: the format grammar's one parser. */
/* Itemsize of format[0..len), or SHL_E_BAD_FORMAT. Never reads past len. */
int64_t shl__format_parse(const char *format, size_t len);

/* layout.c */
/* Bytes a C-contiguous array of this layout needs; SHL_E_BAD_SHAPE on overflow. */
int shl__layout_c_nbytes(const shl_layout *layout, uint64_t itemsize, uint64_t *nbytes);
/* Validate a caller's layout: itemsize from the format, C-order strides
 * filled in when all are zero, unused dimensions zeroed; *extent is the
 * payload it needs. out->format aliases in->format. */
int shl__layout_plan(const shl_layout *in, shl_layout *out, uint64_t *extent);
/* One past the furthest byte any element reaches (0 when empty). Strides
 * must be non-negative: element [0,...,0] is at offset 0. */
int shl__layout_extent(const shl_layout *layout, uint64_t itemsize, uint64_t *extent);
/* Every element addressed by shape/strides lies inside [0, payload_size). */
int shl__layout_check_extent(const shl_layout *layout, uint64_t itemsize, uint64_t payload_size);

/* pace.c: when a stream's next frame is due, learnt from the frames a
 * reader received (shl_reader_set_spin(r, SHL_SPIN_AUTO)). Times are
 * CLOCK_MONOTONIC nanoseconds. */
struct shl__pace {
  int64_t period;    /* the estimate; 0: none */
  int64_t last_ts;   /* publish time of the newest frame received; 0: none */
  uint64_t last_seq;
  int64_t due;       /* when the next frame is expected; 0: no prediction */
  int64_t expect;    /* the last prediction made, kept when `due` is dropped */
  int64_t late;      /* smoothed lateness of frames after their prediction */
  int64_t early;     /* smoothed earliness of frames before it */
  int64_t wake_late; /* smoothed lateness of the reader's timed wake-ups */
  int64_t woke_for;  /* the end of the timed sleep before the window; 0: none */
  int64_t warmup;    /* smoothed time the caller took to come back after a due poll */
  int64_t polled;    /* when a poll first found this window open; 0: none, -1: it came back */
  bool locked;       /* the last interval agreed with the estimate */
  bool declared;     /* the estimate came from the stream's period_ns */
};
enum shl__pace_plan {
  SHL__PACE_SLEEP, /* no prediction: sleep until a frame comes */
  SHL__PACE_EARLY, /* sleep, but only until *until, when the window opens */
  SHL__PACE_SPIN   /* in the window: spin until *until, then sleep */
};
/* Forget what was learnt; a declared period (stream's period_ns, 0 none)
 * is the first estimate. */
void shl__pace_reset(struct shl__pace *p, uint64_t declared_ns);
/* Frame `seq`, published at `ts`, received at `now`. */
void shl__pace_frame(struct shl__pace *p, uint64_t seq, int64_t ts, int64_t now);
/* How to wait at `now` for the next frame (enum shl__pace_plan). A window
 * that passed without a frame ends the prediction until the next one. */
int shl__pace_plan(struct shl__pace *p, int64_t now, int64_t *until);
/* SHL_WAIT_RETURN_DUE: a poll at `now` found the window open, and the
 * caller went to warm up; then the caller's next call, at `now`. */
void shl__pace_polled(struct shl__pace *p, int64_t now);
void shl__pace_came_back(struct shl__pace *p, int64_t now);

/* platform_linux.c: the platform layer, kept small. */
int64_t shl__monotonic_ns(void);
int64_t shl__realtime_ns(void);
/* 0 on wake (or value already changed), -ETIMEDOUT, -EINTR. timeout_ns < 0: forever. */
int shl__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
void shl__futex_wake_all(_Atomic uint32_t *word);
/* The same for a word that only this process's threads sleep on, as a
 * private futex (struct shl__also's private_). */
void shl__futex_wake_private(_Atomic uint32_t *word);
/* Whether this process sleeps on two words at once (futex_waitv, Linux
 * 5.16): decided once, from a probe of the system call and the environment
 * variable SHMLANE_NO_FUTEX_WAITV (set and not "0": never, the fallback). */
bool shl__futex_waitv_usable(void);
/* Sleep while every words[i].word holds words[i].expected (n <=
 * SHL__WAITV_MAX): 0 on wake (or a value already changed), -ETIMEDOUT,
 * -EINTR; -ENOSYS if the kernel cannot (then never again usable). */
#define SHL__WAITV_MAX 3
int shl__futex_waitv(const struct shl__also *words, unsigned n, int64_t timeout_ns);
/* 64 bits no other process can guess (getrandom). */
uint64_t shl__random64(void);
/* Start time of a process (clock ticks since boot), or negative errno. */
int shl__process_start(int32_t pid, uint64_t *start);
/* Whether the caller owns the object open as fd, whose fstat showed the
 * caller's uid: in a user namespace that uid may be the overflow uid (65534),
 * which every owner the namespace does not map shows as too. */
bool shl__owns(int fd);
/* Directory where POSIX shared-memory objects appear as files. */
const char *shl__shm_dir(void);
/* Renames within the shared-memory directory (POSIX names, with their '/'):
 * exchange two existing objects, or move one to a name that must not exist
 * (-EEXIST). Both atomic. */
int shl__shm_exchange(const char *a, const char *b);
int shl__shm_move_new(const char *from, const char *to);
void shl__cpu_relax(void);
/* Sleeps ns nanoseconds (a signal may end it early). */
void shl__sleep_ns(int64_t ns);

/* roles.c: role locks, open-file-description locks (F_OFD_SETLK) on single
 * bytes of an object's file (SHL__ROLE_* in shm_layout.h), held for as long
 * as a role lasts. The kernel drops them when the last descriptor of the
 * holder's open file description closes, so at its death, in whatever PID
 * namespace it runs: liveness comes from the kernel, never from PIDs. */
/* 0 taken; -EBUSY held through another open file description; -errno. */
int shl__role_take(int fd, uint64_t byte);
void shl__role_drop(int fd, uint64_t byte);
/* 1 held through another open file description, 0 free, -1 cannot tell. */
int shl__role_held(int fd, uint64_t byte);
/* No descriptor yet (closing it is a no-op). */
void shl__role_fd_init(struct shl__role_fd *r);
/* A descriptor for role locks: a new open file description of the object
 * `fd` refers to, registered so that a forked child closes its copy at once
 * (a child must never keep its parent's roles alive). -errno on failure,
 * -ESTALE if `name` no longer refers to the object of `fd`. */
int shl__role_fd_open(struct shl__role_fd *r, const char *posix_name, int fd);
void shl__role_fd_close(struct shl__role_fd *r);
/* Takes the writer role of the object under posix_name without reading a
 * byte of it (its header may be a peer's garbage), for a writer taking the
 * name back: 0 with *fd open on the object and r holding the role; -EBUSY
 * while a writer or a creator holds its role (either may be alive);
 * SHL_E_FOREIGN_OWNER if another user owns it; SHL_E_NOT_SHMLANE if it is
 * not a regular file; -errno. */
int shl__role_claim_writer(struct shl__role_fd *r, const char *posix_name, int *fd);
/* Moves a descriptor (and its registration) from src to dst; src is left closed. */
void shl__role_fd_move(struct shl__role_fd *dst, struct shl__role_fd *src);
/* Changes in every child made by fork(): a handle that recorded another
 * value was inherited, and must not touch shared state. */
unsigned shl__fork_generation(void);
/* The handle was opened before a fork(): this process only inherited it. */
static inline bool shl__seg_inherited(const shl_segment *seg) {
  return seg->fork_gen != shl__fork_generation();
}
/* The calling thread's kernel id (cached per thread and fork generation). */
int32_t shl__thread_id(void);

/* liveness.c: a keeper, a thread of this process that holds `words` (of one
 * mapping, 8-byte aligned, at most SHL__KEEPER_MAX_WORDS; the array must
 * outlive it) as robust futexes, its thread id in each, until stopped: when
 * the process dies, whichever of its other threads come and go, the kernel
 * marks every word still holding that id SHL__ALIVE_DIED and wakes one
 * sleeper on each. NULL if no thread could be started. Stopping (after a
 * fork: only freeing) leaves the words alone: clear them first. */
#define SHL__KEEPER_MAX_WORDS 1024 /* the kernel walks at most 2048 entries */
struct shl__keeper;
struct shl__keeper *shl__keeper_start(_Atomic uint32_t *const *words, unsigned nwords);
uint32_t shl__keeper_tid(const struct shl__keeper *k);
void shl__keeper_stop(struct shl__keeper *k);
/* An idle keeper of one word (*word, 8-byte aligned): it stores nothing in
 * it, and its robust list starts empty. A caller that claims the word for
 * the keeper (stores its tid) lists it, and unlists it before giving it up;
 * around each such step it marks the word pending, so that a death between
 * the word's change and the list's is still seen by the kernel (for a
 * pending word that holds 0 it wakes one sleeper). One caller at a time.
 * NULL with *refused if the kernel refused the thread its robust list (a
 * seccomp filter: it always will), without if no thread could start now. */
struct shl__keeper *shl__keeper_start_idle(_Atomic uint32_t *const *word, bool *refused);
void shl__keeper_pending(struct shl__keeper *k, bool on);
void shl__keeper_list(struct shl__keeper *k, bool on);

/* v rounded up to a multiple of align (> 0). */
static inline uint64_t shl__round_up(uint64_t v, uint64_t align) {
  return (v + align - 1) / align * align;
}

/* now + timeout_ns, saturating; a negative timeout means forever. */
static inline int64_t shl__deadline(int64_t now, int64_t timeout_ns) {
  return timeout_ns < 0 || timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

/* The futex word: low 32 bits of the 64-bit change counter. */
static inline _Atomic uint32_t *shl__changes_word(struct shl__header *hdr) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (_Atomic uint32_t *)(void *)&hdr->changes;
#else
  return (_Atomic uint32_t *)(void *)&hdr->changes + 1;
#endif
}

#endif /* SHL_INTERNAL_H */
