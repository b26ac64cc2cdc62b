/* The bridge's logging, formats for logs and clocks (bridge.h): the bottom of the program,
 * calling nothing of it. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "bridge.h"

volatile sig_atomic_t stop_requested;
static char log_prefix[64] = "shmlane-bridge";

void set_log_prefix(const char *prefix) { snprintf(log_prefix, sizeof log_prefix, "%s", prefix); }

/* One line: what it quotes (arguments, a peer's strings) may hold any byte,
 * and a '?' stands for each that is not printable (no escape sequence
 * reaches the terminal, no newline splits the line). */
static void vlog(const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof line, fmt, ap);
  for (char *c = line; *c; c++)
    if (!isprint((unsigned char)*c)) *c = '?';
  fprintf(stderr, "%s: %s\n", log_prefix, line);
}

void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

void log_limited(uint64_t *last_ns, const char *fmt, ...) {
  uint64_t now = now_ns();
  if (*last_ns && now - *last_ns < 1000000000u) return;
  *last_ns = now;
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

const char *format_text(const char *format, char *buf, size_t size) {
  return shl_format_canonical(format, buf, size) >= 0 ? buf : format;
}

static uint64_t clock_of(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
uint64_t now_ns(void) { return clock_of(CLOCK_MONOTONIC); }
uint64_t realtime_ns(void) { return clock_of(CLOCK_REALTIME); }
