/* The include-order trap (issue 10): jsmn.h included before the
   implementation without JSMN_PARENT_LINKS/JSMN_STRICT cannot be
   re-configured; the build must stop with stream_ws.h's own message
   (make compile-check greps for it), not a negative-array error.  With
   -DJSMN_FIRST_CONFIGURED the same order is configured right and builds. */
#ifdef JSMN_FIRST_CONFIGURED
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#endif
#include <jsmn.h>
#define STREAM_WS_IMPLEMENTATION
#include "../../stream_ws.h"
