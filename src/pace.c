/* A stream's pace, as a reader learns it from the publish times of the
 * frames it receives (shl_reader_set_spin(r, SHL_SPIN_AUTO)): when the next
 * frame is due, and the window around that time in which it is worth
 * spinning instead of sleeping. Arithmetic on the times and numbers the
 * caller passes in, nothing else: no clock, no shared memory. Times come
 * from the stream, which a peer with write access may scribble on; whatever
 * they are, a window is never wider than WINDOW_MAX_NS nor than an eighth
 * of the period, and a window that passes without a frame ends the
 * prediction until the next frame. So a wrong guess costs at most one
 * window of spinning, and an idle stream none at all.
 *
 * The period is the interval between frames (divided by the frames skipped
 * between them). It is trusted ("locked") once an interval agrees with the
 * estimate within an eighth; the stream's declared period counts as the
 * first estimate. An interval that disagrees (the writer changed its rate,
 * or paused) unlocks it and becomes the new estimate, so the next agreeing
 * interval locks it again: a rate change costs at most one window.
 *
 * While locked, the due time follows the earliest frames, not the last
 * one: a writer on a schedule (a camera, a timer) publishes each frame at
 * its time plus a delay of its own (the fill, its wake-up) that varies
 * from frame to frame, and the last frame's delay says nothing about the
 * next one's. So a frame that comes early moves the prediction at once and
 * one that comes late only a quarter of the way, and the window reaches
 * past the due time by what frames usually come late; a writer whose own
 * pace drifts is still followed within a few frames.
 *
 * A caller whose own path to a frame is long (an interpreter) polls with
 * SHL_WAIT_RETURN_DUE: told that the frame is due, it runs that path on a
 * stand-in to warm it up before it calls again. The time it takes to come
 * back the first time in a window (smoothed) widens the window before the
 * due time, so that the warm-up ends before the frame comes; a caller that
 * polls at once adds next to nothing. Bounded like the rest. */
#include <stdlib.h>

#include "internal.h"

/* Periods outside these bounds are not predicted: below, a window would be
 * a large share of the period; above, nothing is gained over sleeping. */
#define PERIOD_MIN_NS 500000LL
#define PERIOD_MAX_NS 10000000000LL
/* Each side of the window: at least LEAD_MIN_NS (the wake-up itself is
 * that late after a timed sleep on a VM), widened after the due time by
 * LATE_WIDTH times the frames' smoothed lateness, and before it by twice
 * their smoothed earliness, how late this reader's own timed wake-ups come
 * and its caller's warm-up; at most WINDOW_MAX_NS and an eighth of the
 * period in all. */
#define LEAD_MIN_NS 50000LL
#define LATE_WIDTH 4
/* A frame later than predicted moves the next prediction by 1/CREEP of it. */
#define CREEP 4
#define WINDOW_MAX_NS ((int64_t)SHL_SPIN_MAX_NS) /* a spin's cap (shmlane.h) */
/* Smoothing of the estimates: the newest value weighs 1/SMOOTH. */
#define SMOOTH 8
/* A skip of more frames than this between two received ones: start again. */
#define SKIP_MAX 1024
/* Publish times beyond this are a peer's scribbling (CLOCK_MONOTONIC would
 * need 146 years to get there); below it, sums of a time and a window or a
 * period cannot overflow. */
#define TS_MAX (INT64_MAX / 2)

static int64_t smooth(int64_t avg, int64_t v) { return avg + (v - avg) / SMOOTH; }

static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

void shl__pace_reset(struct shl__pace *p, uint64_t declared_ns) {
  *p = (struct shl__pace){0};
  if (declared_ns >= PERIOD_MIN_NS && declared_ns <= PERIOD_MAX_NS) {
    p->period = (int64_t)declared_ns;
    p->declared = true;
  }
}

void shl__pace_frame(struct shl__pace *p, uint64_t seq, int64_t ts, int64_t now) {
  int64_t last = p->last_ts;
  uint64_t skipped = seq - p->last_seq;
  if (p->woke_for && ts >= p->woke_for) /* it came while the reader overslept the window's start */
    p->wake_late = smooth(p->wake_late, clamp(now - p->woke_for, 0, WINDOW_MAX_NS));
  p->due = 0;
  p->woke_for = 0;
  p->polled = 0;
  if (ts <= 0 || ts > TS_MAX) { /* no time to learn from: start again at the next frame */
    p->last_ts = 0;
    p->locked = false;
    return;
  }
  bool fresh = !last || seq <= p->last_seq || skipped > SKIP_MAX || ts <= last;
  p->last_ts = ts;
  p->last_seq = seq;
  if (fresh) {
    /* No interval yet: a declared period is the estimate, as if agreed. */
    p->locked = p->declared && !last;
    if (p->locked) p->due = p->expect = ts + p->period;
    return;
  }
  int64_t interval = (ts - last) / (int64_t)skipped;
  if (interval < PERIOD_MIN_NS || interval > PERIOD_MAX_NS) {
    p->locked = false;
    return;
  }
  if (p->period && llabs(interval - p->period) <= p->period / 8) {
    int64_t base = ts; /* the time the next prediction counts a period from */
    if (p->locked) { /* how far off this frame was from the prediction */
      int64_t at = p->expect + (int64_t)(skipped - 1) * p->period;
      int64_t err = ts - at;
      p->late = smooth(p->late, clamp(err, 0, WINDOW_MAX_NS));
      p->early = smooth(p->early, clamp(-err, 0, WINDOW_MAX_NS));
      base = err < 0 ? ts : at + err / CREEP;
    }
    p->period = smooth(p->period, interval);
    p->locked = true;
    p->due = p->expect = base + p->period;
  } else {
    p->period = interval; /* a new pace, or a pause: trusted once it repeats */
    p->locked = false;
  }
}

int shl__pace_plan(struct shl__pace *p, int64_t now, int64_t *until) {
  if (!p->due) return SHL__PACE_SLEEP;
  int64_t most = p->period / 8;
  if (most > WINDOW_MAX_NS) most = WINDOW_MAX_NS;
  int64_t late = clamp(LEAD_MIN_NS + LATE_WIDTH * p->late, 0, most / 2);
  int64_t lead = clamp(LEAD_MIN_NS + 2 * p->early + p->wake_late + p->warmup, 0, most - late);
  if (now < p->due - lead) {
    *until = p->woke_for = p->due - lead;
    return SHL__PACE_EARLY;
  }
  if (p->woke_for) { /* the timed sleep before the window ended here */
    p->wake_late = smooth(p->wake_late, clamp(now - p->woke_for, 0, WINDOW_MAX_NS));
    p->woke_for = 0;
  }
  if (now < p->due + late) {
    *until = p->due + late;
    return SHL__PACE_SPIN;
  }
  p->due = 0; /* nothing came in the window: sleep until a frame does */
  return SHL__PACE_SLEEP;
}

void shl__pace_polled(struct shl__pace *p, int64_t now) {
  if (!p->polled) p->polled = now;
}

void shl__pace_came_back(struct shl__pace *p, int64_t now) {
  if (p->polled <= 0) return;
  p->warmup = smooth(p->warmup, clamp(now - p->polled, 0, WINDOW_MAX_NS));
  p->polled = -1; /* once a window */
}
