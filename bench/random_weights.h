// Random weights of any format for the benchmarks, from its traits row:
// random bytes whose f16 fields (block scales and mins, int4g's scale
// plane, f16 values) are small normal numbers, so kernels see realistic
// values (no NaN or infinity paths); f32 weights are normal.
#pragma once

#include "qforge/format.h"
#include "qforge/kernels.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace qforge::bench {

struct RandomWeights {
    std::vector<uint8_t> bytes;   // the weight plane, then the scale plane and the zero points (formats with them)
    int64_t plane = 0;            // bytes of the weight plane
    int64_t out = 0, in = 0;
    Format format = Format::f32;
    int group = 0;

    // A view of these bytes, or of a copy of them at `base` (host or device).
    Weights at(const uint8_t *base) const {
        Weights w{format, base, out, in, 0,
                  traits(format).separate_scales ? reinterpret_cast<const uint16_t *>(base + plane) : nullptr, group};
        if (traits(format).zero_points) w.zeros = base + plane + out * ((in + group - 1) / group) * 2;
        return w;
    }
};

inline RandomWeights random_weights(Format format, int64_t out, int64_t in, int group) {
    const FormatTraits &t = traits(format);
    std::mt19937 g(static_cast<unsigned>(out * 7 + in));
    RandomWeights w;
    w.out = out;
    w.in = in;
    w.format = format;
    w.group = group;
    w.plane = out * row_bytes(format, in);
    w.bytes.resize(static_cast<size_t>(weight_bytes(format, out, in, group)));
    for (auto &b : w.bytes) b = static_cast<uint8_t>(g());
    const uint16_t small = 0x1400;  // f16 ~ 0.001
    auto put = [&](size_t at) {
        w.bytes[at] = small & 0xFF;
        w.bytes[at + 1] = small >> 8;
    };
    const size_t scales_end = t.separate_scales ? w.plane + out * ((in + group - 1) / group) * 2 : w.bytes.size();
    for (size_t at = w.plane; at + 1 < scales_end; at += 2) put(at);
    for (size_t at = scales_end; at < w.bytes.size(); ++at) w.bytes[at] &= 15;  // int4z's zero points
    for (size_t blk = 0; blk < static_cast<size_t>(w.plane); blk += t.block_bytes) {
        for (int f : t.f16_fields) put(blk + f);
    }
    if (t.row_head_bytes) {  // int8, fp8: an f32 scale ~ 0.001 heading each row; fp8 without NaN codes
        const int64_t row = row_bytes(format, in);
        for (int64_t r = 0; r < out; ++r) {
            uint8_t *head = w.bytes.data() + r * row;
            const float s = 0.001f;
            std::memset(head, 0, t.row_head_bytes);
            std::memcpy(head, &s, 4);
            if (format == Format::fp8) {
                for (int64_t k = 0; k < in; ++k) head[t.row_head_bytes + k] &= 0xF7;  // exponent <= 14: finite, |v| <= 240
            }
        }
    }
    if (format == Format::f32) {
        std::normal_distribution<float> n(0, 0.02f);
        auto *f = reinterpret_cast<float *>(w.bytes.data());
        for (int64_t i = 0; i < out * in; ++i) f[i] = n(g);
    }
    return w;
}

}  // namespace qforge::bench
