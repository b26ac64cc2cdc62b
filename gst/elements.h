/* The plugin's two elements (docs/gstreamer.md). */
#ifndef SHMLANE_GST_ELEMENTS_H
#define SHMLANE_GST_ELEMENTS_H

#include <gst/base/gstbasesink.h>
#include <gst/base/gstpushsrc.h>

#define GST_TYPE_SHMLANE_SINK (gst_shmlane_sink_get_type())
G_DECLARE_FINAL_TYPE(GstShmlaneSink, gst_shmlane_sink, GST, SHMLANE_SINK, GstBaseSink)

#define GST_TYPE_SHMLANE_SRC (gst_shmlane_src_get_type())
G_DECLARE_FINAL_TYPE(GstShmlaneSrc, gst_shmlane_src, GST, SHMLANE_SRC, GstPushSrc)

/* Registers both elements with `plugin` (the plugin's init, also called by
 * tests that register the plugin statically). */
gboolean shlgst_register_elements(GstPlugin *plugin);

#endif
