// kernels/lcam.cu compiled for the host: one C entry point per kernel taking the grid size,
// the block size and the kernel's own arguments (see src/emulated.rs for the Rust side).
#include "host_shim.h"

#include "lcam.cu"

extern "C" void lcam_emu_step_f32(unsigned int grid, unsigned int block, const LcamTensor *table,
                                  unsigned long long n_tensors, unsigned long long total_chunks,
                                  unsigned long long chunk, const unsigned int *has_buf,
                                  const LcamController *ctl, const void *loss, int loss_is_f64,
                                  LcamGroups groups) {
    LCAM_EMULATE_GRID(grid, block,
                      lcam_step_f32(table, n_tensors, total_chunks, chunk, has_buf, ctl, loss,
                                    loss_is_f64, groups));
}

extern "C" void lcam_emu_step_f64(unsigned int grid, unsigned int block, const LcamTensor *table,
                                  unsigned long long n_tensors, unsigned long long total_chunks,
                                  unsigned long long chunk, const unsigned int *has_buf,
                                  const LcamController *ctl, const void *loss, int loss_is_f64,
                                  LcamGroups groups) {
    LCAM_EMULATE_GRID(grid, block,
                      lcam_step_f64(table, n_tensors, total_chunks, chunk, has_buf, ctl, loss,
                                    loss_is_f64, groups));
}

extern "C" void lcam_emu_observe(LcamController *ctl, const LcamTensor *table,
                                 unsigned long long n_tensors, unsigned int *has_buf,
                                 const void *loss, int loss_is_f64) {
    LCAM_EMULATE_GRID(1u, 1u, lcam_observe(ctl, table, n_tensors, has_buf, loss, loss_is_f64));
}

extern "C" void lcam_emu_start_epoch(LcamController *ctl) {
    LCAM_EMULATE_GRID(1u, 1u, lcam_start_epoch(ctl));
}

// sizeof of the shared structs, checked against the Rust layout in the tests.
extern "C" unsigned long long lcam_emu_sizeof_tensor(void) { return sizeof(LcamTensor); }
extern "C" unsigned long long lcam_emu_sizeof_controller(void) { return sizeof(LcamController); }
extern "C" unsigned long long lcam_emu_sizeof_groups(void) { return sizeof(LcamGroups); }
