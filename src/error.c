/* One table names every code: library codes from SHL_ERRNO_MAP, errno values
 * from the C library. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

unsigned shl_version_number(void) {
  return SHL_VERSION_MAJOR * 10000u + SHL_VERSION_MINOR * 100u + SHL_VERSION_PATCH;
}

const char *shl_version_string(void) { return SHL_VERSION_STRING; }

const char *shl_strerror(int code) {
  switch (code) {
#define SHL__ERR_TEXT(name, value, text) \
  case SHL_E_##name:                     \
    return text;
    SHL_ERRNO_MAP(SHL__ERR_TEXT)
#undef SHL__ERR_TEXT
  case 0:
    return "success";
  /* libc's texts for these speak of connections and devices, which no call
   * here has: "Connection timed out" after a frame that did not come. */
  case -ETIMEDOUT:
    return "timed out";
  case -EBUSY:
    return "busy: held by another (a live writer, a lock, a loan)";
  default:
    break;
  }
  if (code < 0 && code > -4096) return strerror(-code);
  return "unknown error";
}

const char *shl_err_name(int code) {
  switch (code) {
#define SHL__ERR_NAME(name, value, text) \
  case SHL_E_##name:                     \
    return "SHL_E_" #name;
    SHL_ERRNO_MAP(SHL__ERR_NAME)
#undef SHL__ERR_NAME
  case 0:
    return "OK";
  default:
    break;
  }
#ifdef __GLIBC__
  if (code < 0 && code > -4096) {
    const char *name = strerrorname_np(-code);
    if (name) return name;
  }
#endif
  return code < 0 && code > -4096 ? "ERRNO" : "UNKNOWN";
}

int shl__info_copy(void *dst, const void *src, size_t src_size) {
  uint32_t size;
  if (!dst) return -EINVAL;
  memcpy(&size, dst, sizeof size);
  if (size < sizeof size) return -EINVAL;
  size_t n = size < src_size ? size : src_size;
  memcpy((unsigned char *)dst + sizeof size, (const unsigned char *)src + sizeof size,
         n - sizeof size);
  if (size > src_size) memset((unsigned char *)dst + src_size, 0, size - src_size);
  return 0;
}

#define END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
const struct shl__fields shl__create_opts_fields = {
    sizeof(shl_create_opts),
    3,
    {END(shl_create_opts, kind), END(shl_create_opts, mode), END(shl_create_opts, flags)}};
const struct shl__fields shl__open_opts_fields = {
    sizeof(shl_open_opts),
    4,
    {END(shl_open_opts, flags), END(shl_open_opts, timeout_ns), END(shl_open_opts, owner),
     END(shl_open_opts, owner_uid)}};
const struct shl__fields shl__wait_opts_fields = {
    sizeof(shl_wait_opts), 2, {END(shl_wait_opts, flags), END(shl_wait_opts, spin_ns)}};
const struct shl__fields shl__stream_opts_fields = {
    sizeof(shl_stream_opts),
    6,
    {END(shl_stream_opts, slots), END(shl_stream_opts, max_readers), END(shl_stream_opts, flags),
     END(shl_stream_opts, mode), END(shl_stream_opts, meta_format),
     END(shl_stream_opts, period_ns)}};
const struct shl__fields shl__reader_opts_fields = {
    sizeof(shl_reader_opts),
    6,
    {END(shl_reader_opts, policy), END(shl_reader_opts, timeout_ns),
     END(shl_reader_opts, max_pinned), END(shl_reader_opts, owner), END(shl_reader_opts, owner_uid),
     END(shl_reader_opts, flags)}};
#undef END

int shl__opts_copy(void *dst, const struct shl__fields *fields, const void *src) {
  uint32_t src_size, size = fields->size;
  memcpy(&src_size, src, sizeof src_size);
  if (src_size < sizeof src_size) return -EINVAL;
  const unsigned char *tail = (const unsigned char *)src + size;
  for (size_t i = size; i < src_size; i++)
    if (tail[i - size]) return -E2BIG;
  /* Whole fields only: a size inside a field (a pointer among them) takes
   * none of it. */
  size_t whole = sizeof src_size;
  for (unsigned i = 0; i < fields->n && fields->end[i] <= src_size; i++) whole = fields->end[i];
  memcpy(dst, src, whole);
  memcpy(dst, &size, sizeof size);
  return 0;
}
