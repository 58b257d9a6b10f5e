// The ggml peer: Y = X * W^T through ggml's public API (ggml_mul_mat on a
// graph, computed by the CPU backend), with the weights in ggml's plain CPU
// buffer or in its repacking ("extra") buffer type. Internal to the
// comparison; nothing in qforge links it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

enum class GGMLType { q4_k, q6_k, q4_0, q4_1, q8_0, iq4_xs };

class GGMLMatmul {
public:
    // `copies` copies of the weight bytes (row-major [out, in] in the GGUF
    // block layout) for rotation; repack: load them through CPU_REPACK.
    GGMLMatmul(GGMLType type, const uint8_t *bytes, int64_t out, int64_t in, int copies, bool repack);
    ~GGMLMatmul();
    void set_threads(int threads);
    // y [tokens, out] = x [tokens, in] W^T with the copy-th weights; y stays
    // in ggml's own output tensor (x is copied in when tokens change).
    void run(int copy, const float *x, int64_t tokens, float *y);

private:
    struct State;
    std::unique_ptr<State> s_;
};

std::string ggml_version_string();
