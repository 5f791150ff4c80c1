// Host C++ stand-ins for the CUDA built-ins engine's kernels use, so the .cu sources compile
// as ordinary C++ and run on the CPU (engine/backends/cuda/emulator.py).  Semantics:
// - blocks of a launch run one after another; the threads of a block run one after another
//   too, unless the kernel calls __syncthreads(): then each thread of the block is a fiber
//   (ucontext) on one OS thread, and __syncthreads() switches to the next fiber, so every
//   thread reaches the barrier before any passes it (a thread that finishes while others
//   wait at a barrier is reported: on a GPU that is undefined behaviour);
// - __shared__ variables are function statics: shared by the threads of the running block.
// This is for testing the kernels' index arithmetic and the host planning on machines without
// a GPU; it is slow and says nothing about performance.
#ifndef EK_EMU_SHIM_H
#define EK_EMU_SHIM_H

#include <math.h>
#include <string.h>
#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <functional>
#include <vector>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

using std::max;
using std::min;

static inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

namespace emu {

static inline void set_ids(unsigned t, unsigned bx, unsigned by, unsigned nt, unsigned gx,
                           unsigned gy) {
    threadIdx = {t, 0, 0};
    blockIdx = {bx, by, 0};
    blockDim = {nt, 1, 1};
    gridDim = {gx, gy, 1};
}

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done = false;
};

static ucontext_t g_main;
static std::vector<Fiber> g_fibers;
static unsigned g_cur = 0;
static const std::function<void()>* g_body = nullptr;
static bool g_fiber_mode = false;

static void fiber_entry() {
    (*g_body)();
    g_fibers[g_cur].done = true;
    swapcontext(&g_fibers[g_cur].ctx, &g_main);
}

// __syncthreads(): hand over to the scheduler, which resumes the next thread of the block.
static inline void barrier() {
    if (!g_fiber_mode) {
        fprintf(stderr, "emulator: __syncthreads() in a kernel not marked as synchronising\n");
        abort();
    }
    swapcontext(&g_fibers[g_cur].ctx, &g_main);
}

static int run_block_fibers(unsigned bx, unsigned by, unsigned nt, unsigned gx, unsigned gy,
                            const std::function<void()>& body) {
    const size_t stack_bytes = 256 * 1024;
    g_fibers.resize(nt);
    g_body = &body;
    for (unsigned t = 0; t < nt; ++t) {
        Fiber& f = g_fibers[t];
        f.done = false;
        if (f.stack.size() < stack_bytes) f.stack.assign(stack_bytes, 0);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_entry, 0);
    }
    g_fiber_mode = true;
    for (;;) {
        unsigned finished = 0, waiting = 0;
        for (unsigned t = 0; t < nt; ++t) {
            if (g_fibers[t].done) {
                ++finished;
                continue;
            }
            g_cur = t;
            set_ids(t, bx, by, nt, gx, gy);
            swapcontext(&g_main, &g_fibers[t].ctx);
            if (g_fibers[t].done) ++finished;
            else ++waiting;
        }
        if (finished == nt) break;
        if (finished && waiting) {
            fprintf(stderr, "emulator: %u threads of block (%u, %u) left the kernel while %u "
                            "wait at __syncthreads()\n", finished, bx, by, waiting);
            g_fiber_mode = false;
            return 1;
        }
    }
    g_fiber_mode = false;
    return 0;
}

static inline int run(unsigned gx, unsigned gy, unsigned nt, bool sync,
                      const std::function<void()>& body) {
    for (unsigned by = 0; by < gy; ++by) {
        for (unsigned bx = 0; bx < gx; ++bx) {
            if (sync) {
                if (run_block_fibers(bx, by, nt, gx, gy, body)) return 1;
                continue;
            }
            for (unsigned t = 0; t < nt; ++t) {
                set_ids(t, bx, by, nt, gx, gy);
                body();
            }
        }
    }
    return 0;
}

}  // namespace emu

#define __syncthreads() (emu::barrier())

#endif  // EK_EMU_SHIM_H
