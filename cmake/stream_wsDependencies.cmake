# Where stream_ws.h's dependencies are, for CMakeLists.txt (add_subdirectory)
# and for the installed stream_wsConfig.cmake (find_package).
#
# mbedTLS: its own CMake package when there is one (mbedTLS 3.x installs
# MbedTLSConfig.cmake with MbedTLS::mbedtls/mbedx509/mbedcrypto), else the
# headers and the three libraries found by name (Debian's 2.28 ships neither
# CMake nor pkg-config files).  jsmn is header-only: only its include path.
# Override with STWS_MBEDTLS_INCLUDE_DIR, STWS_MBEDTLS_LIBRARY,
# STWS_MBEDX509_LIBRARY, STWS_MBEDCRYPTO_LIBRARY, STWS_JSMN_INCLUDE_DIR.
#
# Sets _stws_dep_includes, _stws_dep_libraries and _stws_dep_missing (what
# was not found; empty when everything was).
set(_stws_dep_includes "")
set(_stws_dep_libraries "")
set(_stws_dep_missing "")

if(NOT STWS_MBEDTLS_LIBRARY)
  find_package(MbedTLS CONFIG QUIET)
endif()
if(NOT STWS_MBEDTLS_LIBRARY AND TARGET MbedTLS::mbedtls)
  foreach(_stws_t MbedTLS::mbedtls MbedTLS::mbedx509 MbedTLS::mbedcrypto)
    if(TARGET ${_stws_t})
      list(APPEND _stws_dep_libraries ${_stws_t})
    endif()
  endforeach()
else()
  find_path(STWS_MBEDTLS_INCLUDE_DIR mbedtls/ssl.h)
  find_library(STWS_MBEDTLS_LIBRARY mbedtls)
  find_library(STWS_MBEDX509_LIBRARY mbedx509)
  find_library(STWS_MBEDCRYPTO_LIBRARY mbedcrypto)
  foreach(_stws_v STWS_MBEDTLS_INCLUDE_DIR STWS_MBEDTLS_LIBRARY STWS_MBEDX509_LIBRARY
                  STWS_MBEDCRYPTO_LIBRARY)
    if(NOT ${_stws_v})
      list(APPEND _stws_dep_missing ${_stws_v})
    endif()
  endforeach()
  list(APPEND _stws_dep_includes ${STWS_MBEDTLS_INCLUDE_DIR})
  # TLS first: static archives resolve left to right.
  list(APPEND _stws_dep_libraries ${STWS_MBEDTLS_LIBRARY} ${STWS_MBEDX509_LIBRARY}
       ${STWS_MBEDCRYPTO_LIBRARY})
endif()

find_path(STWS_JSMN_INCLUDE_DIR jsmn.h)
if(STWS_JSMN_INCLUDE_DIR)
  list(APPEND _stws_dep_includes ${STWS_JSMN_INCLUDE_DIR})
else()
  list(APPEND _stws_dep_missing STWS_JSMN_INCLUDE_DIR)
endif()
list(REMOVE_DUPLICATES _stws_dep_includes)
