/* The implementation of stream_ws.h for bench_codec, in its own translation
   unit: a user's program calls the codec across a TU boundary, just as the
   benchmark calls wslay through its shared library, so neither side gets
   inlined into the measuring loop. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
