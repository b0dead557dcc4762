// segnet/backend/host_device.hpp: SEGNET_HOST_DEVICE, the marker of the functions one text serves
// on the host and, in an nvcc translation unit, on the device (the shared arithmetic of
// backend/lrn_math.hpp and backend/optimizer_update.hpp).
//
//   SEGNET_HOST_DEVICE inline float twice(float v) { return 2.f * v; }
#pragma once

#if defined(__CUDACC__)
#define SEGNET_HOST_DEVICE __host__ __device__
#else
#define SEGNET_HOST_DEVICE
#endif
