// segnet/backend/cuda/cuda.cuh: the whole CUDA backend for an nvcc-compiled translation unit:
// Tensor<Cuda>, the backend ops (so Model<Net, Cuda> works), loss, optimizers, metrics, transfers.
//
//   #include <segnet/segnet.hpp>
//   #include <segnet/backend/cuda/cuda.cuh>
//   segnet::Model<segnet::models::SegNetBasic<11>, segnet::Cuda> model(42);   // same network type
//
// Only for .cu files compiled by nvcc and linked with segnet::cuda (CUDA runtime + cuDNN);
// CPU-only translation units never include it. See docs/gpu.md.
#pragma once

#ifndef __CUDACC__
#error "segnet/backend/cuda/cuda.cuh must be compiled by nvcc (a .cu file linked with segnet::cuda)"
#endif

#include "segnet/backend/ops.hpp"  // includes backend/cuda/ops.cuh under nvcc, before the layers
#include "segnet/backend/cuda/loss.cuh"
#include "segnet/backend/cuda/metrics.cuh"
#include "segnet/backend/cuda/optimizer.cuh"
#include "segnet/backend/cuda/transfer.cuh"
#include "segnet/compose/model.hpp"
