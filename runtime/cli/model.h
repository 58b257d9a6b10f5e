// A model file of either kind (told apart by its first bytes), as the CLI
// commands use it: the linear layers in it, a layer by name, a tensor as f32.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qforge/gguf.h"
#include "qforge/layers.h"
#include "qforge/safetensors.h"

namespace qforge::cli {

struct LinearInfo {
    std::string name;     // the tensor name, or the int4g prefix
    std::string format;   // "Q4_K", "int4g:128", "F16", ...
    int64_t out = 0, in = 0;
    int64_t bytes = 0;
};

class ModelFile {
public:
    static ModelFile open(const std::string &path);
    bool is_gguf() const { return gguf.has_value(); }
    const std::string &path() const { return path_; }

    std::vector<LinearInfo> linears() const;
    std::unique_ptr<Linear> layer(const std::string &name, const LayerOptions &opt = {}) const;
    // The tensor (or int4g prefix) as f32 [out, in] (or its own shape, flattened).
    std::vector<float> to_f32(const std::string &name, std::vector<int64_t> *shape) const;

    std::optional<GGUFFile> gguf;
    std::optional<SafetensorsFile> st;

private:
    std::string path_;
};

// Raw little-endian f32 files.
std::vector<float> read_f32_file(const std::string &path, int64_t expected_values, const std::string &what);
void write_f32_file(const std::string &path, const std::vector<float> &v);

}  // namespace qforge::cli
