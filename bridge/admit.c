/* Who may receive (admit.h): subscriptions and ZAP requests. No ZeroMQ here;
 * every length comes from the caller and is checked before use. */
#include "admit.h"

#include <string.h>

/* Copies a part into a NUL-terminated field; false if it does not fit. */
static bool copy_text(char *dst, size_t cap, const void *src, size_t len) {
  if (len >= cap || memchr(src, 0, len)) return false;
  memcpy(dst, src, len);
  dst[len] = 0;
  return true;
}

/* "DIGITS" at [s, end): its value, or -1. */
static long long number(const char *s, const char *end) {
  long long v = 0;
  if (s == end || end - s > 10) return -1;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

bool peer_creds(const char *address, uint32_t *uid, uint32_t *gid, int32_t *pid) {
  const char *stop = address + strlen(address), *end = stop, *c[3];
  for (int i = 0; i < 3; i++) {
    while (end > address && end[-1] != ':') end--;
    if (end == address) return false;
    c[i] = end; /* after the colon */
    end--;
  }
  long long p = number(c[0], stop), g = number(c[1], c[0] - 1), u = number(c[2], c[1] - 1);
  if (p < 0 || g < 0 || u < 0 || u > UINT32_MAX || g > UINT32_MAX || p > INT32_MAX) return false;
  *uid = (uint32_t)u, *gid = (uint32_t)g, *pid = (int32_t)p;
  return true;
}

/* Parts: version "1.0", request id, domain, address, identity, mechanism,
 * credentials (CURVE: the 32-byte key; NULL: none). */
const char *zap_parse(const void *const *parts, const size_t *sizes, int n,
                      struct zap_request *out) {
  memset(out, 0, sizeof *out);
  if (n < 6 || n > ZAP_PARTS) return "ZAP request: wrong number of parts";
  if (sizes[0] != 3 || memcmp(parts[0], "1.0", 3)) return "ZAP request: unknown version";
  if (sizes[1] > sizeof out->request_id) return "ZAP request: request id too long";
  memcpy(out->request_id, parts[1], sizes[1]);
  out->request_id_len = sizes[1];
  if (!copy_text(out->address, sizeof out->address, parts[3], sizes[3]))
    return "ZAP request: bad address";
  if (!copy_text(out->mechanism, sizeof out->mechanism, parts[5], sizes[5]))
    return "ZAP request: bad mechanism";
  if (!strcmp(out->mechanism, "CURVE")) {
    if (n != 7 || sizes[6] != 32) return "ZAP request: CURVE without a 32-byte key";
    memcpy(out->key, parts[6], 32);
    out->has_key = true;
  } else if (strcmp(out->mechanism, "NULL") || n != 6) {
    return "ZAP request: mechanism not used by the bridge";
  }
  out->has_creds = peer_creds(out->address, &out->uid, &out->gid, &out->pid);
  return 0;
}

bool may_read(const struct admit_policy *p, uint32_t uid, uint32_t gid, bool in_group) {
  if (uid == 0 || uid == p->self_uid) return true;
  if (!p->stream.known) return false;
  const struct stream_access *s = &p->stream;
  if (uid == s->owner_uid || (s->mode & 0004)) return true;
  return (s->mode & 0040) && (gid == s->group || in_group);
}

int zap_decide(const struct zap_request *q, const struct admit_policy *p, const char **why) {
  *why = 0;
  if (q->has_key && p->nallowed) {
    bool listed = false;
    for (int i = 0; i < p->nallowed && !listed; i++) listed = !memcmp(q->key, p->allowed[i], 32);
    if (!listed) {
      *why = "its key is not in the --allow list";
      return 400;
    }
  }
  /* A local peer over ipc, keys or not: only a user who could read the stream. */
  if (p->ipc && !q->has_creds) {
    *why = "its user cannot be told (no peer credentials)";
    return 400;
  }
  if (p->ipc && !may_read(p, q->uid, q->gid, q->in_group)) {
    *why = "its user could not read the stream from /dev/shm";
    return 400;
  }
  /* Besides the one being admitted (not counted yet): the bound, plus a
   * few that come and go. */
  if (p->receivers >= p->max_receivers || p->connections >= 2 * p->max_receivers) {
    *why = "as many receivers as --max-receivers are served";
    return 500; /* not 300: libzmq answers that with nothing, and the peer waits 30 s */
  }
  return 200;
}
