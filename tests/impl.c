/* The one translation unit that holds the implementation for the tests. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
