/* Who may receive: the sender's decisions on peers (ZAP requests), apart
 * from ZeroMQ so that the fuzz target (fuzz/fuzz_wire.c) can feed them
 * arbitrary bytes. docs/bridge.md, Security. */
#ifndef SHMLANE_BRIDGE_ADMIT_H
#define SHMLANE_BRIDGE_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZAP_PARTS 7 /* at most, in a request */

/* A ZAP request (RFC 27), its parts copied out of the messages. */
struct zap_request {
  char request_id[64];
  size_t request_id_len;
  char address[64]; /* the peer: TCP address, or for ipc "localhost:UID:GID:PID" */
  char mechanism[8];
  uint8_t key[32]; /* CURVE: the client's public key */
  bool has_key;
  bool has_creds; /* an ipc peer: its credentials, from SO_PEERCRED */
  uint32_t uid, gid;
  int32_t pid;
  /* Set by the caller, not parsed: the stream's group is among the
   * supplementary groups of the peer's connection (SO_PEERGROUPS). */
  bool in_group;
};

/* An ipc peer's credentials from the address libzmq gives it (ZAP request,
 * "Peer-Address" of a message): "...:UID:GID:PID" (SO_PEERCRED). */
bool peer_creds(const char *address, uint32_t *uid, uint32_t *gid, int32_t *pid);

/* 0, or why the parts are not a ZAP request. parts[i], sizes[i]: n parts. */
const char *zap_parse(const void *const *parts, const size_t *sizes, int n, struct zap_request *out);

/* Whether the owner's local users may read: what the sender knows about the
 * stream it serves (known: 0 before it has opened one). */
struct stream_access {
  bool known;
  uint32_t owner_uid, group, mode;
};

struct admit_policy {
  bool ipc;                     /* the endpoint is ipc://: peers' users are known */
  uint32_t self_uid;            /* the sender's effective uid */
  struct stream_access stream;  /* of the stream served now */
  const uint8_t (*allowed)[32]; /* CURVE keys of --allow, nallowed of them (0: any key) */
  int nallowed;
  int connections;              /* open now, past their handshake */
  int receivers, max_receivers; /* joined now, and the bound */
};

/* Whether a local user (uid, its primary group gid; in_group: the stream's
 * group is among its supplementary groups) could read the stream from
 * /dev/shm: root, the sender's own user, the stream's owner, a member of
 * its group if the mode lets the group read, or anyone if the mode lets
 * others read. */
bool may_read(const struct admit_policy *p, uint32_t uid, uint32_t gid, bool in_group);

/* The decision on one request, as a ZAP status code: 200 let in, 500 not
 * now (too many receivers: the peer tries again), 400 refused; *why says
 * why not (a static sentence). Not 300 ("try again"): libzmq sends the peer
 * nothing for it (the CURVE rule: a silent disconnect) and keeps the
 * connection until its handshake time limit, 30 s; 500 reaches the peer. */
int zap_decide(const struct zap_request *q, const struct admit_policy *p, const char **why);

#endif /* SHMLANE_BRIDGE_ADMIT_H */
