// segnet/backend/cuda/cuda.cuh: the whole CUDA backend for an nvcc-compiled translation unit:
// Tensor<Cuda> and its transfers, the backend operations on it (so Model<Net, Cuda> works), and
// the loss and optimizer kernels (so CrossEntropyLoss and Sgd/Adam/AdamW run on device tensors).
//
//   #include <segnet/segnet.hpp>
//   #include <segnet/backend/cuda/cuda.cuh>
//   segnet::Model<segnet::models::SegNetBasic<11>, segnet::Cuda> model(42);   // same network type
//
// Only for .cu files compiled by nvcc and linked with segnet::cuda (CUDA runtime + cuDNN);
// CPU-only translation units never include it. The training code itself is the one of train/,
// written over the device (see docs/gpu.md).
#pragma once

#ifndef __CUDACC__
#error "segnet/backend/cuda/cuda.cuh must be compiled by nvcc (a .cu file linked with segnet::cuda)"
#endif

#include "segnet/backend/ops.hpp"  // includes backend/cuda/ops.cuh under nvcc, before the layers
#include "segnet/backend/cross_entropy.hpp"  // and backend/cuda/loss.cuh
#include "segnet/backend/optimizer_update.hpp"  // and backend/cuda/optimizer.cuh
