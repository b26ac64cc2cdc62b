/* What streams and their handles report: a stream's description and its
 * reader entries (for people and tools: single loads, no ordering between
 * them), metadata formats from the handles' validated snapshots, and the
 * handles' plain getters. */
#include <errno.h>
#include <string.h>

#include "stream.h"

/* The snapshot's metadata format, copied into out (of out_size bytes; out
 * may be NULL): its record's size, 0 for none. */
static int64_t copy_meta(const struct stream *s, char *out, size_t out_size) {
  size_t len = strlen(s->meta_format);
  if (out && out_size) out[0] = '\0';
  if (!s->meta_size) return 0;
  if (out) {
    if (out_size < len + 1) return -ERANGE;
    memcpy(out, s->meta_format, len + 1);
  }
  return (int64_t)s->meta_size;
}

shl_segment *shl_writer_segment(const shl_writer *w) { return w->s.seg; }

uint64_t shl_writer_next_seq(const shl_writer *w) { return w->next_seq; }

int shl_writer_get_pinned_by(const shl_writer *w, int32_t *pids, uint32_t max) {
  const struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  int n = 0;
  for (uint32_t i = 0, hwm = reader_hwm(s); i < hwm; i++) {
    uint64_t owner = atomic_load(&s->reader[i].owner);
    if (!owner || !atomic_load(&s->reader[i].pinned)) continue;
    if (pids && (uint32_t)n < max) pids[n] = (int32_t)(uint32_t)owner;
    n++;
  }
  return n;
}

int shl_writer_pinned_by(const shl_writer *w, int32_t *pids, uint32_t max) {
  return shl_writer_get_pinned_by(w, pids, max);
}

int64_t shl_writer_get_meta(const shl_writer *w, char *format, size_t size) {
  return copy_meta(&w->s, format, size);
}

/* r->cur is NULL only in a child forked while another thread closed r. */
shl_segment *shl_reader_segment(const shl_reader *r) { return r->cur ? r->cur->s.seg : NULL; }

int64_t shl_reader_get_meta(const shl_reader *r, char *format, size_t size) {
  return r->cur ? copy_meta(&r->cur->s, format, size) : SHL_E_FORKED;
}

int shl_stream_get_info(const shl_segment *seg, shl_stream_info *out) {
  struct stream s;
  int rc = shl__stream_bind(&s, (shl_segment *)seg);
  if (rc < 0) return rc;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  info.slots = s.slots;
  info.max_readers = s.max_readers;
  info.flags = s.flags;
  info.slot_stride = s.stride;
  info.meta_size = s.meta_size;
  info.meta_offset = s.meta_offset;
  info.base_seq = s.base_seq;
  /* A snapshot for people: from the role locks ("cannot tell" counts as
   * alive for an entry that may be in use) and single loads, with no
   * ordering between them. Every entry's lock, not those below the
   * high-water mark only: a peer may lower the mark, and shmlane gc must
   * still see a live reader. */
  for (uint32_t i = 0, hwm = reader_hwm(&s); i < s.max_readers; i++) {
    int held = shl__role_held(seg->fd, SHL__ROLE_READER(i));
    if (held > 0 || (held < 0 && (i < hwm || atomic_load(&s.reader[i].owner) != 0)))
      info.readers_alive++;
  }
  info.writer_alive = shl__role_held(seg->fd, SHL__ROLE_WRITER);
  info.writer_pid = (int32_t)(uint32_t)atomic_load(&s.ctl->writer);
  info.replaced = atomic_load(&s.ctl->replaced) != 0;
  info.period_ns = atomic_load(&s.ctl->period_ns);
  uint64_t latest = atomic_load(&s.ctl->latest);
  info.last_seq = latest_seq(latest);
  uint32_t slot = latest_slot(latest);
  if (latest && slot < s.slots) info.last_timestamp_ns = atomic_load(&s.slot[slot].timestamp_ns);
  return shl__info_copy(out, &info, sizeof info);
}

int shl_stream_get_reader(const shl_segment *seg, uint32_t index, shl_stream_reader *out) {
  struct stream s;
  int rc = shl__stream_bind(&s, (shl_segment *)seg);
  if (rc < 0) return rc;
  if (index >= s.max_readers) return -ERANGE;
  const struct shl__reader *e = &s.reader[index];
  shl_stream_reader info = SHL_STREAM_READER_INIT;
  /* Every entry, whatever the mark says: a peer may lower it to hide readers. */
  uint64_t owner = atomic_load(&e->owner);
  if (!owner) return 0;
  info.pid = (int32_t)(uint32_t)owner;
  info.alive = shl__role_held(seg->fd, SHL__ROLE_READER(index));
  info.policy = atomic_load(&e->policy);
  info.pinned = atomic_load(&e->pinned) & slots_mask(s.slots);
  info.next_seq = atomic_load(&e->next_seq);
  info.lost = atomic_load_explicit(&e->lost, memory_order_relaxed);
  rc = shl__info_copy(out, &info, sizeof info);
  return rc < 0 ? rc : 1;
}

int64_t shl_stream_get_meta(const shl_segment *seg, char *format, size_t size) {
  struct stream s;
  if (format && size) format[0] = '\0';
  int rc = shl__stream_bind(&s, (shl_segment *)seg);
  return rc < 0 ? rc : copy_meta(&s, format, size);
}
