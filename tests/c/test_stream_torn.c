/* No torn frame at full speed. A writer process publishes 64 KiB frames as
 * fast as it can, every word stamped with the frame's seq, while two `latest`
 * and two `all` reader processes check every word of every sample, and check
 * each sample again once they hold the next one (a pinned slot must not be
 * rewritten). They also check that seq and timestamps only go up and, in
 * `all` mode, that losses add up exactly: the sum of 1 + lost over their
 * samples is the number of frames published. All are this program
 * re-executed with a role argument. */
#include <stdint.h>

#include "testutil_stream.h"

#define WORDS 8192 /* 64 KiB frames */
#define SLOTS 4    /* small: slots are reused often; two held samples still leave one free */
#define READERS 4  /* even: latest, odd: all; the first two hold samples back */
#define MAX_FRAMES 100000
#define MAX_RUN_MS 2000  /* the writer stops then, even short of MAX_FRAMES */
#define MIN_FRAMES 1000  /* fewer would prove little */
#define WAIT_MS 10000    /* bound on anything that should succeed */
#define CHILD_LIMIT_S 60 /* a child still alive by then dies of SIGALRM */

/* A reader's findings, sent over its report pipe when the writer is gone. */
struct report {
  struct t_tally tally;
  uint64_t mislabeled; /* intact, but stamped with another seq */
  uint64_t changed;    /* a held sample whose bytes changed while it was pinned */
  int32_t end_rc;      /* what ended the loop: SHL_E_WRITER_CLOSED */
};

static const char *self; /* argv[0], to re-execute ourselves */

/* ---------------------------------------------------------------- roles */

/* Create the stream, say so, wait for the go, publish, report the count. */
static int role_writer(const char *name, int cmd, int fd) {
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  t_send_byte(fd, 'C');
  T_REQUIRE(t_read_byte(cmd, WAIT_MS) == 'G');
  long long t0 = t_now_ns();
  uint64_t n = 0;
  while (n < MAX_FRAMES && t_now_ns() - t0 < MAX_RUN_MS * T_MS) {
    uint64_t seq = shl_writer_next_seq(w);
    if (t_publish(w, WORDS, seq, WAIT_MS) != seq) break;
    n++;
  }
  shl_writer_close(w);
  T_CHECK(write(fd, &n, sizeof n) == (ssize_t)sizeof n);
  return t_result();
}

/* Receive until the writer is gone; with hold_back, keep each sample pinned
 * until the next one comes. */
static int role_reader(const char *name, uint32_t mode, int hold_back, int fd) {
  shl_reader *r = t_reader_open_pins(name, mode, WAIT_MS, 2);
  struct report rep;
  memset(&rep, 0, sizeof rep);
  rep.tally.mode = mode;
  t_send_byte(fd, 'R');
  shl_sample s, held;
  int holding = 0;
  for (;;) {
    int rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0);
    if (rc != 0) {
      rep.end_rc = rc;
      break;
    }
    t_tally_add(&rep.tally, &s, WORDS);
    rep.mislabeled += *(const uint64_t *)s.data != s.seq;
    if (holding) {
      rep.changed += t_frame_bad_words(held.data, WORDS, held.seq) != 0;
      T_EXPECT_RC(shl_reader_release(r, &held), 0);
    }
    held = s;
    holding = 1;
    if (!hold_back) {
      T_EXPECT_RC(shl_reader_release(r, &held), 0);
      holding = 0;
    }
  }
  if (holding) T_EXPECT_RC(shl_reader_release(r, &held), 0);
  shl_reader_close(r);
  T_CHECK(write(fd, &rep, sizeof rep) == (ssize_t)sizeof rep);
  return t_result();
}

/* argv: self writer name cmd-fd report-fd | self reader name mode hold-back report-fd */
static int run_role(int argc, char **argv) {
  int fd = atoi(argv[argc - 1]);
  if (strcmp(argv[1], "writer") == 0 && argc == 5) return role_writer(argv[2], atoi(argv[3]), fd);
  if (strcmp(argv[1], "reader") == 0 && argc == 6)
    return role_reader(argv[2], (uint32_t)atoi(argv[3]), atoi(argv[4]), fd);
  fprintf(stderr, "unknown role %s\n", argv[1]);
  return 1;
}

/* ---------------------------------------------------------------- parent side */

/* Reap a child; one that did not answer in time is killed first. */
static int finish(pid_t pid, int answered) {
  if (!answered) kill(pid, SIGKILL);
  return t_child_reap(pid);
}

static void check_report(int i, const struct report *rep, uint64_t published) {
  const struct t_tally *t = &rep->tally;
  int ok = rep->end_rc == SHL_E_WRITER_CLOSED && t_tally_clean(t) && !rep->mislabeled &&
           !rep->changed && t->samples > 0 && t->last_seq == published &&
           (t->mode != SHL_RECV_ALL || t->accounted == published);
  char who[32];
  snprintf(who, sizeof who, "reader %d", i);
  if (!ok) {
    t_tally_print(who, t);
    fprintf(stderr, "%s: mislabeled %llu, changed while held %llu, ended with %s; %llu published\n",
            who, (unsigned long long)rep->mislabeled, (unsigned long long)rep->changed,
            shl_err_name(rep->end_rc), (unsigned long long)published);
    t_failures++;
  }
  printf("%s (%s): %llu samples, %llu lost\n", who, t->mode == SHL_RECV_ALL ? "all" : "latest",
         (unsigned long long)t->samples,
         (unsigned long long)(t->mode == SHL_RECV_ALL ? t->accounted - t->samples : 0));
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);
  t_frame_check_canary(WORDS);

  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "torn");
  int wfd, wcmd, rfd[READERS];
  pid_t reader[READERS];
  const char *wargs[] = {self, "writer", name, NULL};
  pid_t writer = t_exec_duplex(wargs, &wfd, &wcmd, CHILD_LIMIT_S);
  T_CHECK(t_read_byte(wfd, WAIT_MS) == 'C');
  /* The readers register before the first frame, so `all` counts from seq 1. */
  for (int i = 0; i < READERS; i++) {
    const char *rargs[] = {self, "reader", name, i % 2 ? "1" : "0", i < 2 ? "1" : "0", NULL};
    reader[i] = t_exec_reporting(rargs, &rfd[i], CHILD_LIMIT_S);
    T_CHECK(t_read_byte(rfd[i], WAIT_MS) == 'R');
  }
  long long t0 = t_now_ns();
  t_send_byte(wcmd, 'G');
  uint64_t published = 0;
  int answered = t_read_full(wfd, &published, sizeof published, MAX_RUN_MS + WAIT_MS) == 0;
  double secs = (double)(t_now_ns() - t0) / 1e9;
  T_CHECK(answered);
  T_EXPECT_EXIT(finish(writer, answered), 0);
  T_CHECK(published >= MIN_FRAMES);
  printf("writer: %llu frames of %d KiB in %.2f s\n", (unsigned long long)published,
         WORDS * 8 / 1024, secs);

  for (int i = 0; i < READERS; i++) {
    struct report rep;
    answered = t_read_full(rfd[i], &rep, sizeof rep, WAIT_MS) == 0;
    T_CHECK(answered);
    if (answered) check_report(i, &rep, published);
    T_EXPECT_EXIT(finish(reader[i], answered), 0);
    close(rfd[i]);
  }
  close(wfd);
  close(wcmd);
  return t_result();
}
