/* Compile check: declarations alone, as every user file but one sees them. */
#include "../../stream_ws.h"
#include "../../stream_ws_test.h"
int compile_check_decl(void);
int compile_check_decl(void) { return stws_close_code_valid(1000); }
