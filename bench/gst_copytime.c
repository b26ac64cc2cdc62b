/* The producer's copy of each frame, timed inside the sink's process of
 * bench/gst.py's pipelines (bench/gst_profile.py --copy). Loaded into
 * gst_peer with LD_PRELOAD, it wraps memcpy.
 *
 * videotestsrc keeps its pattern's frame and copies it into each buffer a
 * row at a time, one memcpy after another (gst_video_frame_copy_plane).
 * SHL_COPYTIME_ROW is a luma row's bytes, and calls of that length or half
 * of it are rows, SHL_COPYTIME_ROWS of them a frame (I420, its width a
 * multiple of 4 so that rows follow each other: twice the height). A frame
 * begins with a luma row that does not follow the one before it in the
 * source (the pattern's first row): calls of a row's length from elsewhere,
 * before or between frames, are not counted. The thread's CPU time from the
 * first row's start to the last row's end is the copy's: three clock reads
 * a frame, none a row. At exit it writes each frame's end (CLOCK_MONOTONIC)
 * and copy time, in ns, to SHL_COPYTIME_OUT/<pid>.json ({"frames": [[end,
 * copy], ...]}), for gst_profile.py to take those in the window of
 * gst_peer's figures. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_FRAMES = 1 << 20 };

static void *(*real_memcpy)(void *, const void *, size_t);
static size_t row, rows;
static uint64_t frame_end[MAX_FRAMES], frame_copy[MAX_FRAMES];
static _Atomic size_t frames;

/* Each thread's frame in progress. */
static _Thread_local uintptr_t last_src;  /* the last luma row's source */
static _Thread_local size_t n = SIZE_MAX; /* rows of the open frame; SIZE_MAX: none open */
static _Thread_local uint64_t start;

static uint64_t clock_ns(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

__attribute__((constructor)) static void init(void) {
  *(void **)&real_memcpy = dlsym(RTLD_NEXT, "memcpy"); /* POSIX's way to a function */
  const char *r = getenv("SHL_COPYTIME_ROW"), *rs = getenv("SHL_COPYTIME_ROWS");
  row = r ? strtoul(r, NULL, 10) : 0;
  rows = rs ? strtoul(rs, NULL, 10) : 0;
}

void *memcpy(void *d, const void *s, size_t len) {
  if (!real_memcpy) { /* before init; volatile, or the compiler makes it a memcpy */
    volatile char *to = d;
    for (size_t i = 0; i < len; i++) to[i] = ((const char *)s)[i];
    return d;
  }
  if (!row || !rows || (len != row && len != row / 2)) return real_memcpy(d, s, len);
  if (len == row && (uintptr_t)s != last_src + row) { /* a frame's first row */
    n = 0;
    start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  }
  if (len == row) last_src = (uintptr_t)s;
  void *out = real_memcpy(d, s, len);
  if (n == SIZE_MAX || ++n < rows) return out;
  n = SIZE_MAX; /* the frame is whole: nothing counts until the next first row */
  uint64_t copy = clock_ns(CLOCK_THREAD_CPUTIME_ID) - start;
  size_t i = atomic_fetch_add(&frames, 1);
  if (i < MAX_FRAMES) frame_end[i] = clock_ns(CLOCK_MONOTONIC), frame_copy[i] = copy;
  return out;
}

__attribute__((destructor)) static void report(void) {
  const char *dir = getenv("SHL_COPYTIME_OUT");
  size_t done = atomic_load(&frames);
  if (!dir || !done) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/%d.json", dir, (int)getpid());
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputs("{\"frames\": [", f);
  for (size_t i = 0; i < done && i < MAX_FRAMES; i++)
    fprintf(f, "%s[%llu, %llu]", i ? ", " : "", (unsigned long long)frame_end[i],
            (unsigned long long)frame_copy[i]);
  fputs("]}\n", f);
  fclose(f);
}
