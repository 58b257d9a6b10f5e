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

inline bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct LinearInfo {
    std::string name;     // the tensor name, or the int4g prefix
    std::string format;   // "Q4_K", "int4g:128", "F16", ...
    int64_t out = 0, in = 0;
    int64_t bytes = 0;
};

// A linear layer as `qforge bench` runs it, runnable or not: a matrix, a
// stack of MoE experts (a 3-D "*_exps.weight" tensor [experts, out, in]),
// or a tied output head (no output.weight: token_embd.weight serves).
struct BenchLinear {
    LinearInfo info;       // info.name is what tables print
    std::string tensor;    // the tensor it reads
    int64_t experts = 0;   // > 0: info.out x info.in is one expert; info.bytes one expert's
    std::string skip;      // why qforge cannot run it; empty: it runs
};

class ModelFile {
public:
    static ModelFile open(const std::string &path);
    bool is_gguf() const { return gguf.has_value(); }
    const std::string &path() const { return path_; }

    std::vector<LinearInfo> linears() const;
    std::unique_ptr<Linear> layer(const std::string &name, const LayerOptions &opt = {}) const;
    // Every linear layer of the file, in file order, with those it cannot run.
    std::vector<BenchLinear> bench_linears() const;
    // Expert `expert` of a stack, or the layer itself.
    std::unique_ptr<Linear> layer(const BenchLinear &l, int64_t expert) const;
    // Experts each token runs (GGUF's <arch>.expert_used_count); 0 when the file does not say.
    int64_t experts_used() const;
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
