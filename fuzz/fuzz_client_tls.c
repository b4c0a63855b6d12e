/* libFuzzer target: fuzz/fuzz_client.c with the client on the library's TLS
   layer (stws_tls over the scripted transport) and an mbedTLS server on the
   fake server's side; see FZ_TLS there.  Slower (a handshake per socket),
   the same oracle. */
#define FZ_TLS 1
#include "fuzz_client.c"
