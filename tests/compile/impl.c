/* Compile check: the whole header with its implementation, in a C TU. */
#define STREAM_WS_IMPLEMENTATION
#include "../../stream_ws.h"
#include "../../stream_ws.h" /* a second include must be harmless */
/* the test kit, implementation included (its symbols are stws_test_*) */
#define STREAM_WS_TEST_IMPLEMENTATION
#include "../../stream_ws_test.h"
#include "../../stream_ws_test.h"
#ifdef STWS_STATIC
/* static mode: reference the API so unused-function warnings stay quiet */
const char *compile_check_use(void);
const char *compile_check_use(void) { return stws_result_string(STWS_OK); }
#endif
