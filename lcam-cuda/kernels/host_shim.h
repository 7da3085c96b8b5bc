// The CUDA vocabulary that kernels/lcam.cu uses, for compiling that same source for the host
// (the `host-emulation` feature of lcam-cuda). A launch is emulated by running every
// (block, thread) pair one after the other: correct for kernels whose threads never wait for
// each other (no __syncthreads, no shared memory), which is the case of every LCAM kernel.
#pragma once

#include <math.h>

#define LCAM_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline

struct lcam_dim3 {
    unsigned int x, y, z;
};

// Per OS thread, so that independent emulated launches may run in parallel (Rust tests do).
static thread_local lcam_dim3 threadIdx = {0, 0, 0};
static thread_local lcam_dim3 blockIdx = {0, 0, 0};
static thread_local lcam_dim3 blockDim = {1, 1, 1};
static thread_local lcam_dim3 gridDim = {1, 1, 1};

// Runs `launch` (a call of a kernel) for every block and thread of a 1-D grid.
#define LCAM_EMULATE_GRID(grid, block, launch)                                                 \
    do {                                                                                       \
        gridDim = lcam_dim3{(grid), 1, 1};                                                     \
        blockDim = lcam_dim3{(block), 1, 1};                                                   \
        for (unsigned int lcam_b = 0; lcam_b < (grid); ++lcam_b) {                             \
            for (unsigned int lcam_t = 0; lcam_t < (block); ++lcam_t) {                        \
                blockIdx = lcam_dim3{lcam_b, 0, 0};                                            \
                threadIdx = lcam_dim3{lcam_t, 0, 0};                                           \
                launch;                                                                        \
            }                                                                                  \
        }                                                                                      \
    } while (0)
