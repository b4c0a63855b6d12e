/* bench/size_mbedtls_config.h: the mbedTLS configuration of the Cortex-M4
   size build (MBEDTLS_CONFIG_FILE).  Debian's own config.h wants pthreads,
   sockets and a file system; a firmware build enables only the modules
   stream_ws.h calls with STWS_NO_SOCKETS and STWS_NO_TLS: SHA-1 and base64
   (Sec-WebSocket-Accept/Key), MD + SHA-256 (HMAC for the JWT), and AES +
   CTR-DRBG + entropy (the default random generator, unused when a random
   hook is given but still referenced).  Only the headers are used: mbedTLS
   itself is not compiled for ARM here. */
#ifndef STWS_SIZE_MBEDTLS_CONFIG_H
#define STWS_SIZE_MBEDTLS_CONFIG_H

#define MBEDTLS_BASE64_C
#define MBEDTLS_SHA1_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_MD_C
#define MBEDTLS_AES_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_NO_PLATFORM_ENTROPY   /* no /dev/urandom on a microcontroller */
#define MBEDTLS_ENTROPY_HARDWARE_ALT  /* mbedtls_hardware_poll() from the TRNG */

#endif
