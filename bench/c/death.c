/* Death detection as a figure (the approach of tests/c/test_stream_death.c):
 * a writer is SIGKILLed while N readers sleep in their receive; each reader
 * notes the CLOCK_MONOTONIC time at which receive said SHL_E_WRITER_GONE.
 * The driver (bench/run.py) starts the processes, waits until every reader
 * sleeps in the futex, reads the clock and kills the writer (or its process
 * group, with a reader in it: the "group" case).
 *
 *   death writer NAME READERS [thread]
 *                               opens the stream, publishes frame 1; with
 *                               "thread", runs a reader thread that receives
 *                               it and then sleeps in receive, killed with
 *                               the process; prints "ready TID" (the reader
 *                               thread's id, 0 for none), then waits to be
 *                               killed
 *   death reader NAME           receives frame 1, prints "ready", then
 *                               "gone T" (T: the time in ns), or "error CODE",
 *                               then waits for the end of its input: a
 *                               reader's exit must not take the CPU from
 *                               readers yet to notice the death */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "common.h"

/* Opens a reader of `name` and receives frame 1: 0 or a library code. */
static int reader_ready(shl_reader **r, const char *name) {
  shl_sample s;
  int rc = shl_reader_open(r, name, SHL_RECV_LATEST, 5000000000LL);
  if (rc < 0) return rc;
  if ((rc = shl_reader_receive(*r, &s, 5000000000LL, 0)) < 0) return rc;
  return shl_reader_release(*r, &s);
}

static _Atomic pid_t thread_tid; /* the reader thread's id once it has frame 1, -1 on failure */

/* A reader thread of the writer's own process: it dies with the writer. */
static void *reader_thread(void *name) {
  shl_reader *r;
  shl_sample s;
  int rc = reader_ready(&r, name);
  atomic_store(&thread_tid, rc < 0 ? -1 : gettid());
  if (rc < 0) return NULL;
  shl_reader_receive(r, &s, 60000000000LL, 0); /* never returns: the process is killed */
  return NULL;
}

int main(int argc, char **argv) {
  if ((argc == 4 || (argc == 5 && !strcmp(argv[4], "thread"))) && !strcmp(argv[1], "writer")) {
    shl_layout frame = {.format = "B", .ndim = 1, .shape = {64}};
    shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
    opts.max_readers = (uint32_t)atoi(argv[3]) + 2;
    shl_writer *w;
    void *slot;
    shl_unlink(argv[2]);
    int rc = shl_writer_open(&w, argv[2], &frame, &opts);
    if (rc < 0) die_rc("shl_writer_open", rc);
    if ((rc = shl_writer_loan(w, &slot, -1)) < 0 || (rc = shl_writer_publish(w, NULL)) < 0)
      die_rc("publish", rc);
    pthread_t t;
    if (argc == 5) {
      if (pthread_create(&t, NULL, reader_thread, argv[2]) != 0) die_rc("pthread_create", -EAGAIN);
      while (atomic_load(&thread_tid) == 0) sleep_ns(100000);
      if (atomic_load(&thread_tid) < 0) die_rc("reader thread", -EIO);
    }
    printf("ready %d\n", (int)atomic_load(&thread_tid));
    fflush(stdout);
    for (;;) pause();
  }
  if (argc == 3 && !strcmp(argv[1], "reader")) {
    shl_reader *r;
    shl_sample s;
    int rc = reader_ready(&r, argv[2]);
    if (rc < 0) die_rc("reader", rc);
    puts("ready");
    fflush(stdout);
    rc = shl_reader_receive(r, &s, 60000000000LL, 0);
    int64_t t = now_ns();
    if (rc == SHL_E_WRITER_GONE) printf("gone %lld\n", (long long)t);
    else printf("error %s\n", shl_err_name(rc));
    fflush(stdout);
    while (getchar() != EOF) {
    }
    shl_reader_close(r);
    return 0;
  }
  fputs("usage: death writer NAME READERS [thread] | death reader NAME\n", stderr);
  return 2;
}
