# Fails the configure step when include/segnet/version.hpp and project(VERSION) disagree.
file(STRINGS "${PROJECT_SOURCE_DIR}/include/segnet/version.hpp" _segnet_version_lines
     REGEX "^#define SEGNET_VERSION_(MAJOR|MINOR|PATCH) ")
set(_segnet_header_version "")
foreach(_part MAJOR MINOR PATCH)
  string(REGEX MATCH "SEGNET_VERSION_${_part} ([0-9]+)" _m "${_segnet_version_lines}")
  list(APPEND _segnet_header_version "${CMAKE_MATCH_1}")
endforeach()
list(JOIN _segnet_header_version "." _segnet_header_version)
if(NOT _segnet_header_version STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "include/segnet/version.hpp says ${_segnet_header_version} but project(VERSION) "
                      "says ${PROJECT_VERSION}: update both together")
endif()
