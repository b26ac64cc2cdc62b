/* Liveness words (docs/format.md, Streams: Liveness): a keeper thread holds
 * words of shared memory as robust futexes, so that the kernel marks them
 * and wakes a sleeper on each when the keeper's process dies. */
#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(SHL__ALIVE_WAITERS == FUTEX_WAITERS && SHL__ALIVE_DIED == FUTEX_OWNER_DIED &&
                   SHL__ALIVE_TID_MASK == FUTEX_TID_MASK,
               "the liveness word uses the kernel's robust futex bits");

/* ---------------------------------------------------------------- keepers
 * A keeper thread holds a set of words of one mapping as robust futexes: it
 * puts them on a robust list of its own (set_robust_list replaces glibc's for
 * this thread, which never locks a pthread mutex) and stores its id in each.
 * When it ends, so when its process dies, the kernel walks that list and, for
 * every word still holding its id, stores OWNER_DIED and wakes one sleeper.
 * The kernel finds a word at a fixed offset from its list entry, so the
 * entries live in a private shadow of the words' span: entry k at the same
 * distance from the shadow's start as word k from the first word.
 * An idle keeper (the segment lock's, lock.c) stores nothing and starts with
 * an empty list: its caller lists the word while it holds it for the keeper. */

struct shl__keeper {
  struct robust_list_head head;
  _Atomic uint32_t *const *words;
  unsigned nwords;
  void *shadow;           /* the list entries, private to this process */
  _Atomic uint32_t state; /* 0 starting, 1 holding, 2 asked to stop; private futex */
  _Atomic uint32_t tid;
  pthread_t thread;
  unsigned fork_gen;
  bool idle; /* the words are listed and claimed by callers (shl__keeper_list), not at start */
};

static void *keeper_main(void *arg) {
  struct shl__keeper *k = arg;
  struct robust_list_head *glibc_head = NULL;
  size_t len = 0;
  syscall(SYS_get_robust_list, 0, &glibc_head, &len);
  /* Listed before any word holds our id: a death between the two leaves
   * nothing that the kernel would miss. */
  long rc = syscall(SYS_set_robust_list, &k->head, sizeof k->head);
  uint32_t tid = (uint32_t)syscall(SYS_gettid);
  if (rc == 0) {
    atomic_store(&k->tid, tid);
    for (unsigned i = 0; i < k->nwords && !k->idle; i++) atomic_store(k->words[i], tid);
  }
  uint32_t expected = 0;
  if (atomic_compare_exchange_strong(&k->state, &expected, 1)) shl__futex_wake_all(&k->state);
  while (atomic_load(&k->state) != 2) shl__futex_wait(&k->state, 1, -1);
  if (rc == 0 && glibc_head) syscall(SYS_set_robust_list, glibc_head, len);
  return NULL;
}

/* The list: entries in the shadow, in the words' order, ending at the head. */
static int keeper_list(struct shl__keeper *k) {
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (unsigned i = 0; i < k->nwords; i++) {
    uintptr_t at = (uintptr_t)k->words[i];
    if (at % sizeof(void *)) return -EINVAL; /* an entry is a pointer */
    if (at < lo) lo = at;
    if (at > hi) hi = at;
  }
  k->shadow = calloc(1, hi - lo + sizeof(struct robust_list));
  if (!k->shadow) return -ENOMEM;
  struct robust_list *prev = &k->head.list;
  for (unsigned i = 0; i < k->nwords; i++) {
    struct robust_list *e =
        (struct robust_list *)((char *)k->shadow + ((uintptr_t)k->words[i] - lo));
    prev->next = e;
    prev = e;
  }
  prev->next = &k->head.list;
  k->head.futex_offset = (long)(lo - (uintptr_t)k->shadow);
  k->head.list_op_pending = NULL;
  if (k->idle) k->head.list.next = &k->head.list; /* entries preset, the list empty */
  return 0;
}

static struct shl__keeper *keeper_start(_Atomic uint32_t *const *words, unsigned nwords,
                                        bool idle, bool *refused) {
  if (refused) *refused = false;
  struct shl__keeper *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->words = words;
  k->nwords = nwords;
  k->idle = idle;
  k->fork_gen = shl__fork_generation();
  pthread_attr_t attr;
  sigset_t all, old;
  sigfillset(&all);
  if (!nwords || nwords > SHL__KEEPER_MAX_WORDS || keeper_list(k) < 0 ||
      pthread_attr_init(&attr) != 0) {
    free(k->shadow);
    free(k);
    return NULL;
  }
  pthread_attr_setstacksize(&attr, 64 * 1024);
  /* The keeper takes no signal meant for the process (it inherits the mask). */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&k->thread, &attr, keeper_main, k);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    free(k->shadow);
    free(k);
    return NULL;
  }
  while (atomic_load(&k->state) == 0) shl__futex_wait(&k->state, 0, -1);
  if (atomic_load(&k->tid) == 0) { /* no robust list: no keeper */
    if (refused) *refused = true;
    shl__keeper_stop(k);
    return NULL;
  }
  return k;
}

struct shl__keeper *shl__keeper_start(_Atomic uint32_t *const *words, unsigned nwords) {
  return keeper_start(words, nwords, false, NULL);
}

struct shl__keeper *shl__keeper_start_idle(_Atomic uint32_t *const *word, bool *refused) {
  return keeper_start(word, 1, true, refused);
}

/* One pointer store each, in the order the kernel may read them at any
 * moment (the keeper can die between two): release stores. */
void shl__keeper_pending(struct shl__keeper *k, bool on) {
  assert(k->idle);
  struct robust_list *e = k->shadow; /* the one word's entry */
  __atomic_store_n(&k->head.list_op_pending, on ? e : NULL, __ATOMIC_RELEASE);
}

void shl__keeper_list(struct shl__keeper *k, bool on) {
  assert(k->idle);
  struct robust_list *e = k->shadow; /* its next is the head, preset */
  __atomic_store_n(&k->head.list.next, on ? e : &k->head.list, __ATOMIC_RELEASE);
}

uint32_t shl__keeper_tid(const struct shl__keeper *k) { return k ? atomic_load(&k->tid) : 0; }

void shl__keeper_stop(struct shl__keeper *k) {
  if (!k) return;
  if (k->fork_gen == shl__fork_generation()) { /* a forked child has no keeper thread */
    atomic_store(&k->state, 2);
    shl__futex_wake_all(&k->state);
    pthread_join(k->thread, NULL);
  }
  free(k->shadow);
  free(k);
}
