// pack_gate_up (qforge/pack.h) into memory the caller owns, so that a block
// can keep its tile pairs on huge pages (weight_memory.h).
#pragma once

#include <cstdint>

#include "qforge/kernels.h"

namespace qforge::internal {

// dst: 2 x packed_bytes(gate.format, gate.out, gate.in, rows) bytes.
void pack_gate_up_into(const Weights &gate, const Weights &up, int rows, uint8_t *dst, int threads = 0);

}  // namespace qforge::internal
