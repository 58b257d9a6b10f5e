// Checks shared by the GGUF and safetensors readers, once every view's
// offset and size is known.
#pragma once

#include <string>
#include <vector>

#include "qforge/gguf.h"

namespace qforge {

// Shape dims positive (or zero, where the format allows empty tensors) and
// their product within int64; returns the product.
int64_t checked_elements(const std::vector<int64_t> &shape, const std::string &where, bool allow_zero = false);

// The exact storage bytes of `shape` in `type` (whole blocks), checked: a
// shape whose byte count passes 2^63 is an error, never a wrapped size.
uint64_t checked_bytes(DType type, const std::vector<int64_t> &shape, const std::string &where, bool allow_zero = false);

// No two views share a byte. Errors name both tensors and the offset.
void check_no_overlap(const std::vector<TensorView> &views, const std::string &file);

// Indices of `views` sorted by name, for find_by_name's binary search (a
// linear find, called once per layer, made loading quadratic in the tensor
// count). `duplicate` gets a view whose name another view also has, or -1.
std::vector<uint32_t> name_index(const std::vector<TensorView> &views, int64_t *duplicate);
const TensorView *find_by_name(const std::vector<TensorView> &views, const std::vector<uint32_t> &index,
                               const std::string &name);

// `s` for an error message: as is up to 256 bytes, else its first 200 and
// its length (a name or value from a file can be megabytes).
std::string clipped(const std::string &s);

std::string shape_string(const std::vector<int64_t> &shape);  // "[4096, 14336]"

}  // namespace qforge
