// Test helper: a layer of any format built from f32 weights, together with
// the exactly dequantized weights it computes with.
#pragma once

#include "test_util.h"

#include "qforge/layers.h"
#include "qforge/quantize.h"

#include <memory>

namespace qforge::test {

inline std::vector<float> weights(int64_t out, int64_t in) { return random_floats(out * in, -0.05f, 0.05f); }

// x [tokens, in] through RMSNorm with weight gamma, in float64, rounded to f32.
inline std::vector<float> rms_normed(const std::vector<float> &x, int64_t tokens, int64_t in,
                                     const std::vector<float> &gamma, double eps) {
    std::vector<float> xn(x.size());
    for (int64_t n = 0; n < tokens; ++n) {
        double ss = 0;
        for (int64_t k = 0; k < in; ++k) ss += static_cast<double>(x[n * in + k]) * x[n * in + k];
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(in) + eps);
        for (int64_t k = 0; k < in; ++k) xn[n * in + k] = static_cast<float>(x[n * in + k] * inv * gamma[k]);
    }
    return xn;
}

// A layer of `format` built from w, kept together with its storage.
struct Built {
    std::vector<uint8_t> bytes;
    std::vector<uint16_t> halves;
    Int4gQuantized i4;
    std::unique_ptr<Linear> layer;
    std::vector<float> dequantized;  // what the layer computes with, [out, in]
};

inline Built build(Format format, const std::vector<float> &w, int64_t out, int64_t in, const float *bias,
                   const LayerOptions &opt = {}, int group_size = 32) {
    Built b;
    WeightRef r;
    r.format = format;
    r.out = out;
    r.in = in;
    b.dequantized.resize(out * in);
    const FormatTraits &t = traits(format);
    if (format == Format::f32) {
        r.data = w.data();
        b.dequantized = w;
    } else if (format == Format::f16 || format == Format::bf16) {
        const bool bf = format == Format::bf16;
        b.halves.resize(w.size());
        for (size_t i = 0; i < w.size(); ++i) b.halves[i] = bf ? ref::f32_to_bf16(w[i]) : f16(w[i]);
        for (size_t i = 0; i < w.size(); ++i) {
            b.dequantized[i] = bf ? ref::bf16_to_f32(b.halves[i]) : ref::f16_to_f32(b.halves[i]);
        }
        r.data = b.halves.data();
    } else if (format == Format::int4g || format == Format::int4z) {
        const bool z = format == Format::int4z;
        b.i4 = z ? quantize_int4z(w.data(), out, in, group_size) : quantize_int4g(w.data(), out, in, group_size);
        r.data = b.i4.weight.data();
        r.scales = b.i4.scales.data();
        r.zeros = z ? b.i4.zeros.data() : nullptr;
        r.group_size = group_size;
        ref::int4z_dequant(b.i4.weight.data(), b.i4.scales.data(), z ? b.i4.zeros.data() : nullptr, out, in,
                           group_size, b.dequantized.data());
    } else if (t.row_head_bytes) {  // int8, fp8: quantized per channel, then qforge's rows
        const ChannelQuantized q = quantize_channels(format, w.data(), out, in);
        b.bytes = channel_rows(format, q.codes.data(), q.scales.data(), out, in);
        r.data = b.bytes.data();
        ref::block_dequant(format, b.bytes.data(), out, in, b.dequantized.data());
    } else {
        if (format == Format::q4_k) {
            b.bytes = quantize_q4k(w.data(), out, in).data;
        } else {
            // Random blocks with sane scales (there is no quantizer for these formats).
            b.bytes = random_bytes(out * in / t.block_elements * t.block_bytes);
            for (size_t k = 0; k < b.bytes.size(); k += t.block_bytes) {
                const uint16_t h = f16(0.001f + 0.01f * static_cast<float>(k % 7) / 7);
                for (int at : t.f16_fields) {
                    b.bytes[k + at] = h & 0xFF;
                    b.bytes[k + at + 1] = h >> 8;
                }
            }
        }
        r.data = b.bytes.data();
        ref::block_dequant(format, b.bytes.data(), out, in, b.dequantized.data());
    }
    b.layer = make_linear("layer." + std::string(t.name), r, bias, opt);
    return b;
}

inline Built build(const std::string &format, const std::vector<float> &w, int64_t out, int64_t in, const float *bias,
                   const LayerOptions &opt = {}, int group_size = 32) {
    return build(format_from_string(format), w, out, in, bias, opt, group_size);
}

}  // namespace qforge::test
