/* Frame streams between processes: one writer, N readers, each its own
 * process started by the driver (bench/run.py).
 *
 *   stream writer NAME FRAME MODE READERS ITERS GAP_NS SECONDS PHASES OUT
 *   stream reader NAME MODE ITERS PHASES OUT
 *
 * FRAME is HxWxC (uint8) or a byte count (a 1-d message); MODE latest or all
 * (all: a blocking stream, so every frame arrives); PHASES a subset of "lcta".
 * The writer creates NAME (the stream) and NAME.c (control, not timed),
 * prints "ready", waits for READERS readers, then runs:
 *
 *   l  latency: ITERS frames, one at a time, GAP_NS apart (0.5x..1.5x) so
 *      readers are asleep in shl_reader_receive; GAP_NS negative: exactly
 *      -GAP_NS apart on an absolute schedule, as a camera. Writer times loan,
 *      fill (one memcpy of the frame from private memory) and publish;
 *      stamps the frame (first 8 bytes) just before publish. Readers record
 *      clock after receive minus stamp (OUT.lat.PID), and minus the time
 *      publish stored with the frame (OUT.latp.PID).
 *   c  cost: ITERS frames, one at a time; readers poll with timeout 0 and
 *      time the successful receive + release (OUT.recv.PID).
 *   t  throughput: the writer publishes as fast as it can for SECONDS
 *      (loan + 16-byte stamp + publish, no fill); readers count frames.
 *   a  the pace changes: ITERS frames -GAP_NS apart on a schedule, ITERS
 *      twice as often, ITERS half as often, then none (filled as in l;
 *      their number in bytes 8-15). Readers record their thread's CPU time
 *      after each frame, by number, and after ADAPT_QUIET_NS more without
 *      a frame (OUT.adapt.PID: 3*ITERS+1 values, -1 for a frame not seen).
 *
 * Readers wait with shl_reader_set_spin(BENCH_SPIN): a number of ns, or
 * "auto" (SHL_SPIN_AUTO, the predictive wait); default 0. The CPU time of
 * phase l (each process, all threads) leaves out its first BENCH_WARMUP
 * frames (default 0), in the writer and the readers alike.
 *
 * Writer files: OUT.loanpub (loan+publish, phase l), OUT.loanpub_cpu (the
 * writer thread's CPU time in them: without time preempted; not on a
 * schedule, where the writer reads no CPU clock, a system call, around its
 * publish: the raw futex's writer does nothing after its wake-up either, and
 * the calls changed where the scheduler put the woken reader),
 * OUT.loanpub_poll (phase c), OUT.memcpy. Each process prints one JSON line
 * of counts. */
#include <stdbool.h>
#include <unistd.h>

#include "common.h"

enum { PH_LAT = 1, PH_COST = 2, PH_THR = 3, PH_ADAPT = 4 };
#define ADAPT_QUIET_NS 1000000000LL /* phase a: how long readers watch after the last frame */

static int parse_frame(const char *s, shl_layout *f) {
  unsigned long a, b, c;
  f->format = "B";
  if (sscanf(s, "%lux%lux%lu", &a, &b, &c) == 3) {
    f->ndim = 3;
    f->shape[0] = a, f->shape[1] = b, f->shape[2] = c;
    return 0;
  }
  if (sscanf(s, "%lu", &a) == 1 && a >= 16) {
    f->ndim = 1;
    f->shape[0] = a;
    return 0;
  }
  return -1;
}

static void wait_acks(struct ctl *c, uint64_t want) {
  while (atomic_load(&c->acks) < want) cpu_relax();
}

/* Phase l: the index of the first frame whose CPU time counts. */
static long cpu_from(long iters) {
  const char *w = getenv("BENCH_WARMUP");
  long n = w ? atol(w) : 0;
  return n <= 0 || iters <= 0 ? 0 : n < iters ? n : iters - 1;
}

static char *path(const char *out, const char *what, int pid) {
  static char buf[4096];
  if (pid) snprintf(buf, sizeof buf, "%s.%s.%d", out, what, pid);
  else snprintf(buf, sizeof buf, "%s.%s", out, what);
  return buf;
}

static int writer(int argc, char **argv) {
  if (argc != 11) return 2;
  const char *name = argv[2], *phases = argv[9], *out = argv[10];
  shl_layout frame = {0};
  if (parse_frame(argv[3], &frame) < 0) return 2;
  int all = !strcmp(argv[4], "all");
  long readers = atol(argv[5]), iters = atol(argv[6]);
  int64_t gap = atoll(argv[7]);
  double seconds = atof(argv[8]);
  size_t size = 1;
  for (uint32_t i = 0; i < frame.ndim; i++) size *= frame.shape[i];

  char cname[64];
  snprintf(cname, sizeof cname, "%s.c", name);
  shl_segment *cseg;
  struct ctl *c = ctl_map(&cseg, cname, 1);
  shl_unlink(name);
  shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
  opts.slots = 8;
  opts.max_readers = 64;
  opts.flags = all ? SHL_STREAM_BLOCK : 0;
  shl_writer *w;
  int rc = shl_writer_open(&w, name, &frame, &opts);
  if (rc < 0) die_rc("shl_writer_open", rc);
  /* Touch every slot and the source once: no page faults in what is timed. */
  shl_segment *sseg = shl_writer_segment(w);
  memset(shl_payload(sseg), 0, shl_payload_size(sseg));
  unsigned char *src = malloc(size);
  if (!src) return 1;
  for (size_t i = 0; i < size; i++) src[i] = (unsigned char)(i * 7);

  puts("ready");
  fflush(stdout);
  while (atomic_load(&c->ready) < (uint64_t)readers) sleep_ns(1000000);

  int64_t *loanpub = alloc_i64((size_t)iters), *poll = alloc_i64((size_t)iters),
          *copy = alloc_i64((size_t)iters), *cpu = alloc_i64((size_t)iters);
  int64_t cpu_clock = thread_cpu_overhead_ns();
  uint64_t acked = 0;
  int64_t lat_cpu = 0, pcpu0 = 0;
  long warm = cpu_from(iters);
  srand(1);
  void *slot;
  for (int ph = PH_LAT; ph <= PH_COST; ph++) {
    if (!strchr(phases, ph == PH_LAT ? 'l' : 'c')) continue;
    atomic_store(&c->phase, (uint64_t)ph);
    int64_t next = now_ns();
    for (long i = 0; i < iters; i++) {
      if (ph == PH_LAT && i == warm) pcpu0 = process_cpu_ns(); /* the frames from here on */
      /* On a schedule the writer sleeps first, as a camera does: it never
       * spins on the CPU the reader may want (the ack came long before). */
      if (ph == PH_LAT && gap < 0) sleep_until_ns(next += -gap);
      wait_acks(c, acked);
      if (ph == PH_LAT && gap > 0) sleep_ns(gap / 2 + rand() % gap);
      bool timed = ph != PH_LAT || gap >= 0; /* the CPU clock too */
      int64_t cpu0 = timed ? thread_cpu_ns() : 0, t0 = now_ns();
      rc = shl_writer_loan(w, &slot, -1);
      int64_t t1 = now_ns(), cpu1 = timed ? thread_cpu_ns() : 0;
      if (rc < 0) die_rc("loan", rc);
      if (ph == PH_LAT) memcpy(slot, src, size);
      int64_t t2 = now_ns();
      /* The timing calls first (the CPU clock is a system call), then the
       * stamp: only its store lies between stamp and publish. */
      int64_t cpu3 = timed ? thread_cpu_ns() : 0, t3 = now_ns();
      uint64_t stamp[2] = {(uint64_t)now_ns(), (uint64_t)i};
      memcpy(slot, stamp, sizeof stamp);
      rc = shl_writer_publish(w, NULL);
      int64_t t4 = now_ns(), cpu4 = timed ? thread_cpu_ns() : 0;
      if (rc < 0) die_rc("publish", rc);
      (ph == PH_LAT ? loanpub : poll)[i] = (t1 - t0) + (t4 - t3);
      if (ph == PH_LAT) copy[i] = t2 - t1;
      if (ph == PH_LAT && timed) cpu[i] = (cpu1 - cpu0) + (cpu4 - cpu3) - 2 * cpu_clock;
      acked += (uint64_t)readers;
    }
    wait_acks(c, acked);
    if (ph == PH_LAT) lat_cpu = process_cpu_ns() - pcpu0; /* paced: this process, all threads */
  }
  if (strchr(phases, 'a')) {
    atomic_store(&c->phase, PH_ADAPT);
    int64_t period = gap < 0 ? -gap : gap, next = now_ns();
    for (long i = 0; i < 3 * iters; i++) {
      sleep_until_ns(next += i < iters ? period : i < 2 * iters ? period / 2 : 2 * period);
      if ((rc = shl_writer_loan(w, &slot, -1)) < 0) die_rc("loan", rc);
      memcpy(slot, src, size);
      uint64_t stamp[2] = {(uint64_t)now_ns(), (uint64_t)i};
      memcpy(slot, stamp, sizeof stamp);
      if ((rc = shl_writer_publish(w, NULL)) < 0) die_rc("publish", rc);
    }
  }
  long published = 0;
  double elapsed = 0;
  if (strchr(phases, 't')) {
    atomic_store(&c->phase, PH_THR);
    int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9), t = start;
    while (t < end) {
      rc = shl_writer_loan(w, &slot, -1);
      if (rc < 0) die_rc("loan", rc);
      uint64_t stamp[2] = {(uint64_t)now_ns(), (uint64_t)published};
      memcpy(slot, stamp, sizeof stamp);
      shl_writer_publish(w, NULL);
      published++;
      if ((published & 63) == 0) t = now_ns();
    }
    elapsed = (double)(now_ns() - start) / 1e9;
    atomic_store(&c->stamp, (uint64_t)(elapsed * 1e9));
    atomic_store(&c->done, 1);
  }
  while (atomic_load(&c->ready) > 0) sleep_ns(1000000); /* readers leave */
  if (strchr(phases, 'l')) {
    dump(path(out, "loanpub", 0), loanpub, (size_t)iters);
    dump(path(out, "memcpy", 0), copy, (size_t)iters);
    dump(path(out, "loanpub_cpu", 0), cpu, (size_t)iters);
  }
  if (strchr(phases, 'c')) dump(path(out, "loanpub_poll", 0), poll, (size_t)iters);
  printf("{\"published\": %ld, \"seconds\": %.6f, \"lat_cpu_ns\": %lld, \"lat_cpu_frames\": %ld}\n",
         published, elapsed, (long long)lat_cpu, strchr(phases, 'l') ? iters - warm : 0L);
  shl_writer_close(w);
  shl_unlink(name);
  shl_close(cseg);
  shl_unlink(cname);
  return 0;
}

static int reader(int argc, char **argv) {
  if (argc != 7) return 2;
  const char *name = argv[2], *phases = argv[5], *out = argv[6];
  uint32_t policy = !strcmp(argv[3], "all") ? SHL_RECV_ALL : SHL_RECV_LATEST;
  long iters = atol(argv[4]);
  char cname[64];
  snprintf(cname, sizeof cname, "%s.c", name);
  shl_segment *cseg;
  struct ctl *c = ctl_map(&cseg, cname, 0);
  shl_reader *r;
  int rc = shl_reader_open(&r, name, policy, 5000000000LL);
  if (rc < 0) die_rc("shl_reader_open", rc);
  const char *spin = getenv("BENCH_SPIN");
  if (spin) shl_reader_set_spin(r, !strcmp(spin, "auto") ? SHL_SPIN_AUTO : (uint32_t)atol(spin));
  atomic_fetch_add(&c->ready, 1);
  int64_t *lat = alloc_i64((size_t)iters), *latp = alloc_i64((size_t)iters),
          *cost = alloc_i64((size_t)iters);
  shl_sample s;
  uint64_t stamp;
  int64_t lat_cpu = 0, pcpu0 = 0;
  long warm = cpu_from(iters);
  if (strchr(phases, 'l')) {
    for (long i = 0; i < iters; i++) {
      if (i == warm) pcpu0 = process_cpu_ns(); /* as the writer's */
      rc = shl_reader_receive(r, &s, -1, 0);
      int64_t t1 = now_ns();
      if (rc < 0) die_rc("receive", rc);
      memcpy(&stamp, s.data, sizeof stamp);
      lat[i] = t1 - (int64_t)stamp;
      latp[i] = t1 - (int64_t)s.timestamp_ns;
      shl_reader_release(r, &s);
      atomic_fetch_add(&c->acks, 1);
    }
    lat_cpu = process_cpu_ns() - pcpu0;
  }
  if (strchr(phases, 'c')) {
    for (long i = 0; i < iters; i++) {
      for (;;) {
        int64_t t0 = now_ns();
        rc = shl_reader_receive(r, &s, 0, 0);
        if (rc == 0) {
          shl_reader_release(r, &s);
          cost[i] = now_ns() - t0;
          break;
        }
        if (rc != -ETIMEDOUT) die_rc("receive", rc);
      }
      atomic_fetch_add(&c->acks, 1);
    }
  }
  long frames = 0, lost = 0;
  if (strchr(phases, 't')) {
    while (atomic_load(&c->phase) != PH_THR) sleep_ns(100000);
    for (;;) {
      rc = shl_reader_receive(r, &s, 10000000, 0);
      if (rc == 0) {
        frames++;
        lost += (long)s.lost;
        shl_reader_release(r, &s);
      } else if (rc == -ETIMEDOUT) {
        if (atomic_load(&c->done)) break;
      } else {
        die_rc("receive", rc);
      }
    }
  }
  int pid = (int)getpid();
  if (strchr(phases, 'a')) {
    long n = 3 * iters, last = -1;
    int64_t *cpu = alloc_i64((size_t)n + 1);
    for (long i = 0; i <= n; i++) cpu[i] = -1;
    while (last != n - 1) {
      if ((rc = shl_reader_receive(r, &s, -1, 0)) < 0) die_rc("receive", rc);
      uint64_t head[2]; /* stamp, number */
      memcpy(head, s.data, sizeof head);
      shl_reader_release(r, &s);
      last = head[1] < (uint64_t)n ? (long)head[1] : last;
      if (last >= 0) cpu[last] = thread_cpu_ns();
    }
    rc = shl_reader_receive(r, &s, ADAPT_QUIET_NS, 0);
    if (rc != -ETIMEDOUT) die_rc("receive after the last frame", rc == 0 ? -EEXIST : rc);
    cpu[n] = thread_cpu_ns();
    dump(path(out, "adapt", pid), cpu, (size_t)n + 1);
  }
  if (strchr(phases, 'l')) dump(path(out, "lat", pid), lat, (size_t)iters);
  if (strchr(phases, 'l')) dump(path(out, "latp", pid), latp, (size_t)iters);
  if (strchr(phases, 'c')) dump(path(out, "recv", pid), cost, (size_t)iters);
  printf("{\"frames\": %ld, \"lost\": %ld, \"seconds\": %.6f, \"lat_cpu_ns\": %lld, "
         "\"lat_cpu_frames\": %ld}\n", frames, lost, (double)atomic_load(&c->stamp) / 1e9,
         (long long)lat_cpu, strchr(phases, 'l') ? iters - warm : 0L);
  fflush(stdout);
  shl_reader_close(r);
  atomic_fetch_sub(&c->ready, 1);
  shl_close(cseg);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "writer")) return writer(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "reader")) return reader(argc, argv);
  fputs("usage: stream writer NAME FRAME MODE READERS ITERS GAP_NS SECONDS PHASES OUT\n"
        "       stream reader NAME MODE ITERS PHASES OUT\n", stderr);
  return 2;
}
