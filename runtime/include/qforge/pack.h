// Packed weight layouts (FORMATS.md, "Packed layouts"): the file's blocks
// rearranged so that one vector of a kernel holds the same k of R rows,
// with every scale decoded to bytes once. Packing is a lossless byte
// permutation: unpack_weights gives back the file's bytes exactly.
//
//   int R = qforge::preferred_pack_rows(qforge::Format::q4_k);   // 0: none here
//   std::vector<uint8_t> p(qforge::packed_bytes(Format::q4_k, out, in, R));
//   qforge::pack_weights(file_weights, R, p.data());
//   qforge::Weights w = file_weights; w.data = p.data(); w.pack_rows = R;
//   qforge::matmul(w, q8k_activations, bias, y);
//
// Layers (layers.h) do this by themselves at load.
#pragma once

#include <cstdint>

#include "qforge/format.h"
#include "qforge/kernels.h"

namespace qforge {

// Whether `format` has a packed layout (traits(format).packed_block_bytes).
bool has_packed_layout(Format format);
// Bytes of an [out, in] weight packed in tiles of `rows`: ceil(out/rows)
// tiles, the last one padded with zero rows. Throws Error for a format
// without a packed layout, in not whole blocks, or rows not a multiple of 4.
int64_t packed_bytes(Format format, int64_t out, int64_t in, int rows);
// The tile height R of this CPU's packed kernels for `format` (the kernel
// table's `pack` column for this CPU's family), 0 where none is built.
int preferred_pack_rows(Format format);

// `w` (the file's layout, any row stride) packed in tiles of `rows` into
// `dst` (packed_bytes of it). Runs on the calling thread and `threads` - 1
// more (0: one per core).
void pack_weights(const Weights &w, int rows, void *dst, int threads = 0);
// The inverse: packed `w` (w.pack_rows set) back to the file's dense rows
// in `dst` (out x row bytes).
void unpack_weights(const Weights &w, void *dst);

}  // namespace qforge
