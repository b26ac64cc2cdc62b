/* What both elements say about their stream (util.h). */
#include "util.h"

#include <errno.h>

#include "shmlane.h"

gchar *shlgst_stream_name(GstElement *element, const gchar *stream) {
  return g_strdup(stream && *stream ? stream : GST_OBJECT_NAME(element));
}

gboolean shlgst_property_settable(GstElement *element, GParamSpec *pspec) {
  GstState state = GST_STATE(element), next = GST_STATE_NEXT(element);
  if (!(pspec->flags & GST_PARAM_MUTABLE_READY) ||
      (state <= GST_STATE_READY && next <= GST_STATE_READY))
    return TRUE;
  g_warning("%s: property '%s' can only be changed in the NULL or READY state; it keeps its "
            "value",
            GST_OBJECT_NAME(element), pspec->name);
  return FALSE;
}

gchar *shlgst_error_text(const gchar *name, int code) {
  switch (code) {
    case -EBUSY: return g_strdup_printf("stream '%s': another writer holds it", name);
    case -EUSERS: return g_strdup_printf("stream '%s': its reader table is full", name);
    case SHL_E_BAD_NAME:
      return g_strdup_printf("'%s' is not a stream name: 1 to %d characters of A-Z a-z 0-9 . _ -, "
                             "starting with a letter or digit (set the element's name or stream)",
                             name, SHL_NAME_MAX);
    default: return g_strdup_printf("stream '%s': %s", name, shl_strerror(code));
  }
}
