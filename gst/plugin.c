/* The GStreamer plugin "shmlane": the entry point, which registers
 * shmlanesink and shmlanesrc. */
#include "elements.h"
#include "shmlane.h"

gboolean shlgst_register_elements(GstPlugin *plugin) {
  return gst_element_register(plugin, "shmlanesink", GST_RANK_NONE, GST_TYPE_SHMLANE_SINK) &&
         gst_element_register(plugin, "shmlanesrc", GST_RANK_NONE, GST_TYPE_SHMLANE_SRC);
}

#define PACKAGE "shmlane"
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, shmlane,
                  "Raw video through shmlane streams: zero-copy shared memory between processes",
                  shlgst_register_elements, SHL_VERSION_STRING, "MIT", "shmlane", "shmlane")
