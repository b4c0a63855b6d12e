# ESP-IDF's first pass over a component, imitated: CMakeLists.txt in script
# mode with CMAKE_BUILD_EARLY_EXPANSION set and an idf_component_register()
# macro that records REQUIRES and returns (as IDF's
# tools/cmake/scripts/component_get_requirements.cmake does).  Run:
#   cmake -DCOMPONENT_DIR=<repo> -P early.cmake
macro(idf_component_register)
  cmake_parse_arguments(_ "" "KCONFIG;KCONFIG_PROJBUILD"
    "SRCS;SRC_DIRS;EXCLUDE_SRCS;INCLUDE_DIRS;PRIV_INCLUDE_DIRS;LDFRAGMENTS;REQUIRES;PRIV_REQUIRES;REQUIRED_IDF_TARGETS;EMBED_FILES;EMBED_TXTFILES"
    ${ARGN})
  set(__component_requires "${__REQUIRES}")
  set(__component_registered 1)
  return()
endmacro()
function(get_requirements)
  include("${COMPONENT_DIR}/CMakeLists.txt")
  set(__component_requires "${__component_requires}" PARENT_SCOPE)
  set(__component_registered "${__component_registered}" PARENT_SCOPE)
endfunction()
set(CMAKE_BUILD_EARLY_EXPANSION 1)
set(__component_registered 0)
get_requirements()
if(NOT __component_registered)
  message(FATAL_ERROR "esp-idf early expansion: the component did not register")
endif()
if(NOT __component_requires STREQUAL "mbedtls;lwip")
  message(FATAL_ERROR "esp-idf early expansion: REQUIRES is '${__component_requires}'")
endif()
message(STATUS "esp-idf early expansion: registered, REQUIRES ${__component_requires}")
