/* One table names every code: library codes from SHL_ERRNO_MAP, errno values
 * from the C library. */
#include <errno.h>
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

int shl__opts_copy(void *dst, size_t dst_size, const void *src, uint32_t src_size) {
  if (src_size < sizeof(uint32_t)) return -EINVAL;
  const unsigned char *tail = (const unsigned char *)src + dst_size;
  for (size_t i = dst_size; i < src_size; i++)
    if (tail[i - dst_size]) return -E2BIG;
  memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
  *(uint32_t *)dst = (uint32_t)dst_size;
  return 0;
}
