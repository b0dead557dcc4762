# cmake -DBUILD_DIR=<segnet build> -DSOURCE_DIR=<tests/consumer> -DWORK_DIR=<scratch> -P run_consumer.cmake
# Installs the segnet build into WORK_DIR/prefix, then configures, builds and runs the consumer
# project against it, as a user of the package would (no access to the source tree).
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_consumer.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED CONFIG)
  set(CONFIG Release)
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}")
  endif()
  message("${out}")
endfunction()

step(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" --config ${CONFIG})
foreach(f include/segnet/segnet.hpp include/segnet/version.hpp share/cmake/segnet/segnetConfig.cmake
          share/cmake/segnet/segnetConfigVersion.cmake share/cmake/segnet/segnetTargets.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "the install tree lacks ${f}")
  endif()
endforeach()
if(NOT DEFINED EXPECT_CUDA)
  set(EXPECT_CUDA OFF)
endif()
step(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -DCMAKE_BUILD_TYPE=${CONFIG}
     "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DSEGNET_EXPECT_CUDA=${EXPECT_CUDA})
step(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
step("${WORK_DIR}/build/consumer")
