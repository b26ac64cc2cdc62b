/* What both elements say about their stream: its name and the text of an
 * error. The bottom of the plugin: it calls nothing of it. */
#ifndef SHMLANE_GST_UTIL_H
#define SHMLANE_GST_UTIL_H

#include <gst/gst.h>

/* The stream name of an element: its "stream" property, or else its name.
 * Newly allocated. Under the element's object lock. */
gchar *shlgst_stream_name(GstElement *element, const gchar *stream);

/* Whether property `pspec` may change now. One flagged
 * GST_PARAM_MUTABLE_READY is read when the element opens its stream: set in
 * PAUSED or PLAYING (or on the way there), it would apply only at the next
 * start while the element's messages named the new value. So, as GStreamer's
 * own elements do, such a change is refused with a warning and the property
 * keeps its value. Under the element's object lock. */
gboolean shlgst_property_settable(GstElement *element, GParamSpec *pspec);

/* A message for a shmlane error code on stream `name`. Newly allocated. */
gchar *shlgst_error_text(const gchar *name, int code);

#endif
