/* Reading an object's header for an opener: the header checked against
 * the object's size, then the object mapped, or (a handle that only
 * describes) its header, format and kind-specific area copied with pread.
 * The owner may cut the object short (ftruncate) at any moment: a mapping
 * then raises SIGBUS at the first page past the new end, a read only comes
 * up short. So what is read before anything is mapped is read with pread. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Some process may hold read but not write permission: it cannot register
 * as a waiter, so notify must always wake. */
bool shl__mode_has_readonly_class(uint32_t mode) {
  return ((mode & 040) && !(mode & 020)) || ((mode & 04) && !(mode & 02));
}

/* While the creator initialises, the magic is zero or being written. */
static bool magic_in_progress(const char magic[8]) {
  for (size_t i = 0; i < sizeof SHL__MAGIC; i++)
    if (magic[i] != 0 && magic[i] != SHL__MAGIC[i]) return false;
  return true;
}

static bool in_bounds(uint64_t off, uint64_t len, uint64_t limit) {
  return off <= limit && len <= limit - off;
}

/* Checks a snapshot of a READY header against the object's size. */
static int validate_header(const struct shl__header *h, uint64_t file_size) {
  if (memcmp(h->magic, SHL__MAGIC, sizeof SHL__MAGIC) != 0) return SHL_E_NOT_SHMLANE;
  if (h->format_version != SHL__FORMAT_VERSION) return SHL_E_VERSION;
  if (h->header_size != SHL__HEADER_SIZE) return SHL_E_BAD_HEADER;
  if (h->total_size > file_size) return SHL_E_TRUNCATED;
  if (h->total_size < SHL__HEADER_SIZE || h->total_size > SIZE_MAX) return SHL_E_BAD_HEADER;
  if (h->kind < SHL_KIND_ARRAY || h->kind > SHL_KIND_STREAM) return SHL_E_BAD_KIND;
  if (h->payload_offset % SHL__PAYLOAD_ALIGN || h->payload_offset < SHL__HEADER_SIZE ||
      !in_bounds(h->payload_offset, h->payload_size, h->total_size))
    return SHL_E_BAD_HEADER;
  if (h->format_offset < SHL__HEADER_SIZE || h->format_len == 0 ||
      h->format_len > SHL_FORMAT_MAX ||
      !in_bounds(h->format_offset, (uint64_t)h->format_len + 1, h->payload_offset))
    return SHL_E_BAD_HEADER;
  /* Aligned too: the stream area's atomics and futex words must be. */
  if (h->ext_size && (h->ext_offset % SHL__EXT_ALIGN ||
                      h->ext_offset < h->format_offset + h->format_len + 1 ||
                      !in_bounds(h->ext_offset, h->ext_size, h->payload_offset)))
    return SHL_E_BAD_HEADER;
  if (h->ndim > SHL_MAX_NDIM) return SHL_E_BAD_SHAPE;
  /* Only a stream has a kind-specific area (and must). */
  if ((h->kind == SHL_KIND_STRUCT && h->ndim != 0) || (h->kind == SHL_KIND_STREAM) != !!h->ext_size)
    return SHL_E_BAD_KIND;
  return 0;
}

/* Checks the format (the private copy taken from inside bounds already
 * proven) and that every element lies inside the payload. */
static int validate_layout(const struct shl__header *h, const char *format) {
  int64_t itemsize = shl__format_parse(format, h->format_len);
  if (itemsize < 0) return (int)itemsize;
  if (h->itemsize != (uint64_t)itemsize) return SHL_E_ITEMSIZE;
  shl_layout layout = {.format = format, .itemsize = h->itemsize, .ndim = h->ndim};
  memcpy(layout.shape, h->shape, sizeof layout.shape);
  memcpy(layout.strides, h->strides, sizeof layout.strides);
  return shl__layout_check_extent(&layout, h->itemsize, h->payload_size);
}

/* The format is copied before it is checked, so that what is checked is
 * what this process keeps, whatever a peer writes later. */
void shl__seg_fill_snapshot(shl_segment *seg, const struct shl__header *h, const char *format) {
  seg->kind = h->kind;
  seg->hdr_flags = h->flags;
  /* A copy ends where the payload starts: it has none. */
  seg->payload = seg->flags & SHL__SEG_COPY ? NULL : (unsigned char *)seg->hdr + h->payload_offset;
  seg->payload_size = h->payload_size;
  seg->ext = h->ext_size ? (unsigned char *)seg->hdr + h->ext_offset : NULL;
  seg->ext_size = h->ext_size;
  memcpy(seg->format, format, h->format_len);
  seg->format[h->format_len] = '\0';
  seg->layout.format = seg->format;
  seg->layout.itemsize = h->itemsize;
  seg->layout.ndim = h->ndim;
  memcpy(seg->layout.shape, h->shape, sizeof seg->layout.shape);
  memcpy(seg->layout.strides, h->strides, sizeof seg->layout.strides);
}

/* The object's bytes [0, size) into buf; a short read (the object cut
 * short meanwhile) is SHL_E_TRUNCATED. */
static int read_at_start(int fd, void *buf, size_t size) {
  for (size_t got = 0; got < size;) {
    ssize_t n = pread(fd, (char *)buf + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return SHL_E_TRUNCATED;
    got += (size_t)n;
  }
  return 0;
}

/* The fixed header, once ready: read again after READY was seen, so that
 * no field in the copy predates the creator's publication. */
static int read_header(int fd, struct shl__header *snap) {
  int rc = read_at_start(fd, snap, sizeof *snap);
  if (rc < 0) return rc;
  if (atomic_load_explicit(&snap->state, memory_order_relaxed) != SHL__STATE_READY)
    return magic_in_progress(snap->magic) ? -EAGAIN : SHL_E_NOT_SHMLANE;
  atomic_thread_fence(memory_order_acquire);
  return read_at_start(fd, snap, sizeof *snap);
}

/* Where the handle's header lives: the object mapped (what the header
 * describes, which fstat showed to exist: nothing beyond it is ever
 * touched), or for a copy its bytes up to the payload, read once (the
 * header in them checked again: a peer may have rewritten it meanwhile). */
static int place_header(shl_segment *seg, struct shl__header *snap, bool writable,
                        uint64_t file_size) {
  if (!(seg->flags & SHL__SEG_COPY)) {
    void *map = mmap(NULL, (size_t)snap->total_size,
                     PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, seg->fd, 0);
    if (map == MAP_FAILED) return -errno;
    seg->hdr = map;
    seg->map_size = (size_t)snap->total_size;
    return 0;
  }
  size_t size = (size_t)snap->payload_offset;
  struct shl__header *copy = malloc(size);
  if (!copy) return -ENOMEM;
  int rc = read_at_start(seg->fd, copy, size);
  if (rc == 0) {
    memcpy(snap, copy, sizeof *snap);
    rc = validate_header(snap, file_size);
  }
  if (rc == 0 && snap->payload_offset != size) rc = SHL_E_BAD_HEADER;
  if (rc < 0) {
    free(copy);
    return rc;
  }
  seg->hdr = copy;
  seg->map_size = size;
  return 0;
}

void shl__seg_unplace(shl_segment *seg) {
  if (seg->hdr && (seg->flags & SHL__SEG_COPY))
    free(seg->hdr);
  else if (seg->hdr)
    munmap(seg->hdr, seg->map_size);
  seg->hdr = NULL;
}

int shl__seg_try_map(shl_segment *seg, bool writable) {
  struct stat st;
  if (fstat(seg->fd, &st) < 0) return -errno;
  if (!S_ISREG(st.st_mode)) return SHL_E_NOT_SHMLANE;
  if (st.st_size == 0) return -EAGAIN; /* created, not yet sized */
  if ((uint64_t)st.st_size < SHL__HEADER_SIZE) {
    char magic[8] = {0};
    if (pread(seg->fd, magic, sizeof magic, 0) < 0) return -errno;
    return memcmp(magic, SHL__MAGIC, sizeof magic) == 0 ? SHL_E_TRUNCATED : SHL_E_NOT_SHMLANE;
  }
  /* The fixed header alone first: the file may be far larger than the
   * segment it claims to hold. */
  struct shl__header snap;
  int rc = read_header(seg->fd, &snap);
  if (rc == 0) rc = validate_header(&snap, (uint64_t)st.st_size);
  if (rc == 0) rc = place_header(seg, &snap, writable, (uint64_t)st.st_size);
  if (rc < 0) return rc;
  const char *live_format = (const char *)seg->hdr + snap.format_offset;
  rc = live_format[snap.format_len] != '\0' ? SHL_E_BAD_FORMAT : 0;
  if (rc == 0) {
    shl__seg_fill_snapshot(seg, &snap, live_format);
    seg->mode = (uint32_t)st.st_mode & 07777;
    /* Opened up by chmod after creation, or the flag cleared by a peer:
     * the mode says whether some process may only read (notify.c). */
    if (shl__mode_has_readonly_class(seg->mode)) seg->hdr_flags |= SHL__HDR_WAKE_ALWAYS;
    rc = validate_layout(&snap, seg->format);
  }
  if (rc < 0) shl__seg_unplace(seg);
  return rc;
}
