/* A consumer of an installed stream_ws (tools/test-packaging.sh builds it with
   CMake via add_subdirectory and find_package, and with pkg-config flags): the
   implementation compiled here links mbedTLS and includes jsmn.h from the
   paths the package gives; the JWTs must be PROTOCOL.md §7's known answers. */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <stdio.h>
#include <string.h>

static int expect(const char *what, stws_result r, const char *got, const char *want) {
    if (r != STWS_OK || strcmp(got, want) != 0) {
        fprintf(stderr, "consumer: %s: %s, got \"%s\"\n", what, stws_result_string(r), got);
        return 1;
    }
    return 0;
}

int main(void) {
    char tok[256];
    size_t n = 0;
    int bad = 0;
    stws_jwt_claims c;
    memset(&c, 0, sizeof c);
    c.user_id = "tommaso";
    c.exp = 1566941272;
    c.iat = 1566941272;
    tok[0] = 0;
    bad |= expect("user token", stws_jwt_user_token("secret", 6, &c, tok, sizeof tok, &n), tok,
                  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                  "eyJleHAiOjE1NjY5NDEyNzIsImlhdCI6MTU2Njk0MTI3MiwidXNlcl9pZCI6InRvbW1hc28ifQ."
                  "3HY2O_7o5ZjZ-6KCXLzyPpHZOlNEDy6_m3iNb5DKAMY");
    tok[0] = 0;
    bad |= expect("server token", stws_jwt_server_token("secret", 6, tok, sizeof tok, &n), tok,
                  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzZXJ2ZXIiOnRydWV9."
                  "DHnfQolWsEGFcTR7ZwVBbIVUFAvxzDJXzB6UlyU-7JQ");
    if (bad) return 1;
    printf("consumer: stream_ws %s, JWT known answers: ok\n", STWS_VERSION_STRING);
    return 0;
}
