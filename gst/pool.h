/* The sink's stream writer, shared with its buffer pool and the buffers
 * over its slots, and the pool that lends upstream the stream's slots. */
#ifndef SHMLANE_GST_POOL_H
#define SHMLANE_GST_POOL_H

#include <gst/video/video.h>

#include "cond.h"
#include "shmlane.h"

/* A buffer made over one slot, kept for that slot's next loan (pool.c). */
typedef struct shlgst_slot shlgst_slot;

/* A writer handle (single-threaded: every call on it is made under `lock`)
 * and what keeps its mapping alive: memory over a slot must never outlive
 * the mapping, so the handle is closed only once the sink is done with it
 * (`closing`) and no such memory is out (`live`), and the buffers kept over
 * its slots go before it is closed or replaced. */
typedef struct shlgst_writer {
  gint refs;
  GMutex lock;
  shlgst_cond cond;    /* signalled when `loan`, `live`, `closing` or `flushing` change */
  shl_writer *w;       /* NULL once closed */
  GstMemory *loan;     /* the memory over the slot loaned to upstream, while it is out */
  guint live;          /* memories over slots that are out: lent, or shared beyond their buffer */
  shlgst_slot *slots[SHL_STREAM_MAX_SLOTS]; /* the buffers made over this mapping's slots */
  guint n_slots;
  guint stream;        /* counts replacements: a pool lends slots of the stream it was made for */
  gboolean closing;    /* the sink is done: close once `live` is 0 */
  gint flushing;       /* atomic: waits end (the sink is stopping or flushing) */
  int64_t timeout_ns;  /* how long a frame may wait for a free slot; < 0 forever */
} shlgst_writer;

shlgst_writer *shlgst_writer_new(shl_writer *w);
shlgst_writer *shlgst_writer_ref(shlgst_writer *wr);
void shlgst_writer_unref(shlgst_writer *wr);
/* The sink lets go: the handle closes now or when the last slot memory goes. */
void shlgst_writer_finish(shlgst_writer *wr);
void shlgst_writer_set_flushing(shlgst_writer *wr, gboolean flushing);

/* Under wr->lock: waits until no slot memory is out (before a loan or a
 * replace), within wr->timeout_ns, while neither wr->flushing nor *stop
 * (may be NULL) is set. FALSE if it stopped waiting. */
gboolean shlgst_writer_wait_idle_locked(shlgst_writer *wr, const gint *stop);
/* Under wr->lock: loans a slot, waiting in slices while neither
 * wr->flushing nor *stop (may be NULL: upstream's pool flushing) is set,
 * within wr->timeout_ns. 0 or a negative code (-ETIMEDOUT, SHL_E_*). */
int shlgst_writer_loan_locked(shlgst_writer *wr, void **frame, const gint *stop);
/* Under wr->lock, idle: the stream replaced by one of `frame` (the buffers
 * kept over the old slots go first). As shl_writer_replace. */
int shlgst_writer_replace_locked(shlgst_writer *wr, const shl_layout *frame,
                                 const shl_stream_opts *opts);

#define GST_TYPE_SHMLANE_POOL (gst_shmlane_pool_get_type())
G_DECLARE_FINAL_TYPE(GstShmlanePool, gst_shmlane_pool, GST, SHMLANE_POOL, GstBufferPool)

/* A pool whose buffers are loaned slots of wr's stream, frames laid out as
 * `frames` (one buffer at a time: a writer has one loan). */
GstBufferPool *gst_shmlane_pool_new(shlgst_writer *wr, const GstVideoInfo *frames);
/* TRUE if `pool` lends wr's slots. */
gboolean gst_shmlane_pool_is_for(GstBufferPool *pool, const shlgst_writer *wr);

#endif
