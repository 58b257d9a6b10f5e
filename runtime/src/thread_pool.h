// The pool the CPU kernels' parallel loops run on (halide_do_par_for).
//
// Halide's own pool puts an idle worker to sleep after a few dozen yields,
// so each kernel call pays a wake-up per worker; a decode call on many
// cores is about 0.1 ms, of the order of those wake-ups (and more in a
// virtual machine, where waking a halted vCPU goes through the host). These
// workers spin for a while after a job (QF_SPIN_US, as OpenMP's and ggml's
// do), so back-to-back calls find them awake, then sleep.
#pragma once

namespace qforge::internal {

// Routes Halide's parallel loops here; idempotent. The workers start at
// the first parallel loop.
void install_thread_pool();

// The count the next parallel loop runs with (set_num_threads). Stops the
// workers; the caller ensures no kernel call is in flight.
void resize_thread_pool(int threads);

}  // namespace qforge::internal
