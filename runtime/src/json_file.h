// Small JSON files beside a checkpoint (config.json, a safetensors index),
// read with the limits README's "Hostile files" asks of every input.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace qforge::internal {

// The nesting a JSON document may have. Checked before parsing: nlohmann's
// parser and its error messages recurse once per level, so thousands of '['
// overflow the stack.
constexpr int kMaxJsonDepth = 16;

// Throws Error naming `path` and the byte (`text`'s offset `first_byte` in
// the file) where `text` nests deeper than kMaxJsonDepth.
void check_json_depth(const char *text, uint64_t n, const std::string &path, uint64_t first_byte);

// The file at `path` parsed as JSON: Error naming the path if it cannot be
// read, is larger than `max_bytes`, nests too deep or is not JSON.
nlohmann::json read_json_file(const std::string &path, uint64_t max_bytes = 64ull << 20);

}  // namespace qforge::internal
