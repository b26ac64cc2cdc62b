/* What both elements say about their stream: its name and the text of an
 * error. The bottom of the plugin: it calls nothing of it. */
#ifndef SHMLANE_GST_UTIL_H
#define SHMLANE_GST_UTIL_H

#include <gst/gst.h>

/* The stream name of an element: its "stream" property, or else its name.
 * Newly allocated. Under the element's object lock. */
gchar *shlgst_stream_name(GstElement *element, const gchar *stream);

/* A message for a shmlane error code on stream `name`. Newly allocated. */
gchar *shlgst_error_text(const gchar *name, int code);

#endif
