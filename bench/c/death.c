/* Death detection as a figure (the approach of tests/c/test_stream_death.c):
 * a writer is SIGKILLed while N readers sleep in their receive; each reader
 * notes the CLOCK_MONOTONIC time at which receive said SHL_E_WRITER_GONE.
 * The driver (bench/run.py) starts the processes, waits until every reader
 * sleeps in the futex, reads the clock and kills the writer.
 *
 *   death writer NAME READERS   opens the stream, publishes frame 1, prints
 *                               "ready", then waits to be killed
 *   death reader NAME           receives frame 1, prints "ready", then
 *                               "gone T" (T: the time in ns), or "error CODE",
 *                               then waits for the end of its input: a
 *                               reader's exit must not take the CPU from
 *                               readers yet to notice the death */
#include <signal.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "writer")) {
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
    puts("ready");
    fflush(stdout);
    for (;;) pause();
  }
  if (argc == 3 && !strcmp(argv[1], "reader")) {
    shl_reader *r;
    shl_sample s;
    int rc = shl_reader_open(&r, argv[2], SHL_RECV_LATEST, 5000000000LL);
    if (rc < 0) die_rc("shl_reader_open", rc);
    if ((rc = shl_reader_receive(r, &s, 5000000000LL, 0)) < 0) die_rc("receive", rc);
    shl_reader_release(r, &s);
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
  fputs("usage: death writer NAME READERS | death reader NAME\n", stderr);
  return 2;
}
