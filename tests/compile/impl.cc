// Compile check: the header with its implementation in a C++ TU.
#define STREAM_WS_IMPLEMENTATION
#include "../../stream_ws.h"
#define STREAM_WS_TEST_IMPLEMENTATION
#include "../../stream_ws_test.h"
#ifdef STWS_STATIC
const char *compile_check_use();
const char *compile_check_use() { return stws_result_string(STWS_OK); }
#endif
