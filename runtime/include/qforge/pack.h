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
#include <optional>
#include <string>
#include <vector>

#include "qforge/format.h"
#include "qforge/kernels.h"

namespace qforge {

class GGUFFile;
class GGUFWriter;

// Whether `format` has a packed layout (traits(format).packed_block_bytes).
bool has_packed_layout(Format format);
// Bytes of an [out, in] weight packed in tiles of `rows`: ceil(out/rows)
// tiles, the last one padded with zero rows. Throws Error for a format
// without a packed layout, in not whole packed blocks
// (traits(format).packed_block_elements), or rows not a multiple of 4.
// int4g packs where its group size is a multiple of 32.
int64_t packed_bytes(Format format, int64_t out, int64_t in, int rows);
// Blocks per row of the packed layout: in / packed_block_elements, plus
// one for a row head (int8's scale). Throws Error like packed_bytes.
int64_t packed_row_blocks(Format format, int64_t in);
// The tile height R of this CPU's packed kernels for `format` (and int4g's
// group size) (the kernel table's `pack` column for this CPU's family), 0
// where none is built.
int preferred_pack_rows(Format format, int group_size = 0);
// The same for a target family ("x86", "arm64") or a target name of it
// ("x86-avx2"): what `qforge pack --target` packs for. Throws Error for an
// unknown name.
int pack_rows_for(const std::string &target, Format format, int group_size = 0);
// "x86" or "arm64" for a family or target name; throws Error for others.
std::string target_family(const std::string &target);

// `w` (the file's layout, any row stride) packed in tiles of `rows` into
// `dst` (packed_bytes of it). Runs on the calling thread and `threads` - 1
// more (0: one per core).
void pack_weights(const Weights &w, int rows, void *dst, int threads = 0);
// An FFN's gate and up weights (one format, shape and group size; the
// file's layout) packed in tiles of `rows` with their tiles in pairs: gate
// tile t, then up tile t (FORMATS.md, "Gate/up tile pairs"), what
// matmul_glu reads; 2 x packed_bytes(format, out, in, rows) bytes.
std::vector<uint8_t> pack_gate_up(const Weights &gate, const Weights &up, int rows, int threads = 0);
// The inverse: packed `w` (w.pack_rows set) back to the file's dense rows
// in `dst`: weight_bytes(format, out, in, group_size) bytes, the weight
// plane followed, for int4g and int4z, by its scale plane [out, ceil(in/G)]
// and, for int4z, its zero points [out, ceil(in/G)].
void unpack_weights(const Weights &w, void *dst);

// Packed tensors in GGUF files (FORMATS.md, "Packed GGUF files"), as
// `qforge pack` writes them: the packed bytes as a 1-D I8 tensor under the
// layer's name, described by metadata keys qforge.pack.<name>.{format, out,
// in, group, rows, family} (and experts, for a stack).
struct PackedTensor {
    Format format;
    int64_t out, in;
    int group_size;
    int rows;
    std::string family;
    // > 0: a stack of this many [out, in] matrices (MoE experts, a 3-D
    // "*_exps" tensor), each packed on its own, one after another.
    int64_t experts = 0;
    // Bytes of one matrix of it (of the whole tensor when experts is 0).
    int64_t matrix_bytes() const;
};
// How `name` is packed in `f`, or nothing if it is not a packed tensor.
// Throws Error (naming the key) for inconsistent metadata.
std::optional<PackedTensor> packed_tensor(const GGUFFile &f, const std::string &name);
// Adds `w` packed in tiles of `p.rows` to `out` as `name`, with its keys.
// With p.experts > 0, w.data is a stack of that many [w.out, w.in]
// matrices in the file's layout (no separate scales), packed one by one.
void add_packed_tensor(GGUFWriter &out, const std::string &name, const Weights &w, const PackedTensor &p);

}  // namespace qforge
