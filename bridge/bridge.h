/* shmlane-bridge: private interfaces between its files. The only code of the
 * project that knows ZeroMQ (docs/bridge.md). */
#ifndef SHMLANE_BRIDGE_H
#define SHMLANE_BRIDGE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "shmlane.h"
#include "wire.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#define MAX_ALLOW 64

struct bridge_opts {
  const char *name; /* send: the local stream; recv: LOCAL_NAME or NULL */
  const char *endpoint;
  const char *key;              /* our key file (PREFIX.key) */
  const char *server_key;       /* recv: the sender's public key file */
  const char *allow[MAX_ALLOW]; /* send: receivers' public key files */
  int nallow;
  bool insecure, latest, quiet;
  int zstd_level; /* 0: no compression */
  double max_fps; /* 0: no limit */
  int hwm;        /* ZeroMQ high-water mark, in messages */
  uint32_t slots; /* recv: 0 = as the sender's stream */
  double seconds; /* 0: run until stopped */
};

/* main.c */
extern volatile sig_atomic_t stop_requested;
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like logf_, at most a few times a second for one `what` counter. */
void log_limited(uint64_t *last_ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t now_ns(void);
uint64_t realtime_ns(void);
/* Whether an endpoint stays on this machine (ipc, inproc, tcp to loopback). */
bool endpoint_is_local(const char *endpoint);
/* A key file's fields (Z85, 40 characters and a NUL); secret may be NULL. */
int read_key_file(const char *path, char public_key[41], char secret_key[41]);
/* Socket options for CURVE and the monitor shared by both sides; see main.c. */
int setup_socket(void *sock, const struct bridge_opts *o, bool server);
/* Reads one monitor event (its code in *event, -1 if none was waiting): the
 * text for a failed handshake, or NULL. */
const char *handshake_failure(void *monitor, bool server, char *peer, size_t peer_size, int *event);

/* send.c, recv.c */
int run_send(const struct bridge_opts *o);
int run_recv(const struct bridge_opts *o);

#endif /* SHMLANE_BRIDGE_H */
