#include "qforge/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "qforge/error.h"
#include "qforge/kernels.h"

namespace qforge {
namespace {

int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }

// f(row) for every row, rows split across one thread per core. Rows are
// independent, so the result does not depend on the thread count.
template <typename F>
void parallel_rows(int64_t rows, F f) {
    const int64_t threads = std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()), rows);
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            for (int64_t r = t * rows / threads; r < (t + 1) * rows / threads; ++r) f(r);
        });
    }
    for (auto &th : pool) th.join();
}

float bf16_to_f32(uint16_t b) {
    const uint32_t x = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

}  // namespace

float f16_bits_to_f32(uint16_t h) {
    const int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    float v;
    if (exponent == 0) {
        v = std::ldexp(static_cast<float>(mantissa), -24);
    } else if (exponent == 31) {
        v = mantissa ? NAN : INFINITY;
    } else {
        v = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
    }
    return sign ? -v : v;
}

uint16_t f32_to_f16_bits(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = (x >> 16) & 0x8000;
    const float a = std::fabs(f);
    if (std::isnan(f)) return sign | 0x7E00;
    if (a >= 65520.0f) return sign | 0x7C00;
    if (a < std::ldexp(1.0f, -14)) return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
    int e;
    const float m = std::frexp(a, &e);
    uint32_t mant = static_cast<uint32_t>(std::nearbyint(std::ldexp(m, 11)));
    if (mant == 2048) {
        mant = 1024;
        ++e;
    }
    return sign | static_cast<uint16_t>(((e + 14) << 10) | (mant & 0x3FF));
}

std::vector<float> to_f32(DType type, const void *data, int64_t n) {
    std::vector<float> out(n);
    if (n == 0) return out;
    // A file's tensor may start at any byte (safetensors has no alignment): read halves with memcpy.
    const auto *bytes = static_cast<const uint8_t *>(data);
    auto half = [&](int64_t i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        return h;
    };
    switch (type) {
    case DType::f32: std::memcpy(out.data(), data, n * 4); break;
    case DType::f16: for (int64_t i = 0; i < n; ++i) out[i] = f16_bits_to_f32(half(i)); break;
    case DType::bf16: for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(half(i)); break;
    default: throw Error("cannot convert " + to_string(type) + " to f32 (F32, F16 and BF16 can be quantized)");
    }
    return out;
}

std::vector<uint8_t> f32_to_bytes(DType type, const std::vector<float> &v) {
    std::vector<uint8_t> bytes;
    if (type == DType::f32) {
        bytes.resize(v.size() * 4);
        if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
        return bytes;
    }
    if (type != DType::f16) throw Error("f32_to_bytes: " + to_string(type) + " is not F32 or F16");
    bytes.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
        const uint16_t h = f32_to_f16_bits(v[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return bytes;
}

double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    return n ? std::sqrt(s / n) : 0.0;
}

// ---- int4g ----

namespace {

// Squared error of quantizing x[0..n) with f16 scale bits `s` (q = clamp(round(x/scale), -8, 7)).
double group_error(const float *x, int n, uint16_t s, int8_t *q) {
    const float scale = f16_bits_to_f32(s);
    const float inv = scale != 0 ? 1.0f / scale : 0.0f;
    double err = 0;
    for (int i = 0; i < n; ++i) {
        const int v = std::clamp(nearest_int(x[i] * inv), -8, 7);
        if (q) q[i] = static_cast<int8_t>(v);
        const double d = static_cast<double>(v) * scale - x[i];
        err += d * d;
    }
    return err;
}

uint16_t int4g_group_scale(const float *x, int n, bool search) {
    float amax = 0, max_signed = 0;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max_signed = x[i];
        }
    }
    if (amax == 0) return 0;
    // The extreme value lands exactly on -8: the whole signed range is used.
    uint16_t best = f32_to_f16_bits(max_signed / -8.0f);
    if (!search) return best;
    double best_err = group_error(x, n, best, nullptr);
    std::vector<int8_t> q(n);
    for (int step = -9; step <= 9; ++step) {
        // Candidate: extreme onto -(8 + step/10), then the least-squares scale for those quants.
        const float iscale = -(8.0f + 0.1f * step) / max_signed;
        double sum_qx = 0, sum_q2 = 0;
        for (int i = 0; i < n; ++i) {
            const int v = std::clamp(nearest_int(x[i] * iscale), -8, 7);
            sum_qx += static_cast<double>(v) * x[i];
            sum_q2 += static_cast<double>(v) * v;
        }
        if (sum_q2 == 0) continue;
        const uint16_t cand = f32_to_f16_bits(static_cast<float>(sum_qx / sum_q2));
        const double err = group_error(x, n, cand, nullptr);
        if (err < best_err) {
            best_err = err;
            best = cand;
        }
    }
    return best;
}

}  // namespace

// The checked, zeroed planes of an int4g (or, with zeros, int4z) result.
static Int4gQuantized int4_planes(const char *who, int64_t out, int64_t in, int G, bool zeros) {
    if (out <= 0 || in <= 0 || in % 2 != 0) {
        throw Error(std::string(who) + ": shape [" + std::to_string(out) + ", " + std::to_string(in) +
                    "] needs positive sizes and an even in");
    }
    if (G < 2 || G % 2 != 0) throw Error(std::string(who) + ": group size " + std::to_string(G) + " must be even and >= 2");
    Int4gQuantized r;
    r.out = out;
    r.in = in;
    r.group_size = G;
    const int64_t ng = (in + G - 1) / G;
    r.weight.assign(out * (in / 2), 0);
    r.scales.assign(out * ng, 0);
    if (zeros) r.zeros.assign(out * ng, 0);
    return r;
}

Int4gQuantized quantize_int4g(const float *w, int64_t out, int64_t in, int G, bool search) {
    Int4gQuantized r = int4_planes("quantize_int4g", out, in, G, false);
    const int64_t ng = (in + G - 1) / G;
    std::vector<double> row_err(out, 0.0);
    parallel_rows(out, [&](int64_t row) {
        std::vector<int8_t> q(G);
        double &err = row_err[row];
        for (int64_t g = 0; g < ng; ++g) {
            const int64_t c0 = g * G;
            const int n = static_cast<int>(std::min<int64_t>(G, in - c0));
            const float *x = w + row * in + c0;
            const uint16_t s = int4g_group_scale(x, n, search);
            r.scales[row * ng + g] = s;
            err += group_error(x, n, s, q.data());
            for (int i = 0; i < n; ++i) {
                const int64_t c = c0 + i;
                const uint8_t nib = static_cast<uint8_t>(q[i] + 8);
                r.weight[row * (in / 2) + c / 2] |= (c % 2 == 0) ? nib : static_cast<uint8_t>(nib << 4);
            }
        }
    });
    double err = 0;
    for (double e : row_err) err += e;
    r.rmse = std::sqrt(err / static_cast<double>(out * in));
    return r;
}

Int4gQuantized quantize_int4z(const float *w, int64_t out, int64_t in, int G) {
    Int4gQuantized r = int4_planes("quantize_int4z", out, in, G, true);
    const int64_t ng = (in + G - 1) / G;
    std::vector<double> row_err(out, 0.0);
    parallel_rows(out, [&](int64_t row) {
        for (int64_t g = 0; g < ng; ++g) {
            const int64_t c0 = g * G;
            const int n = static_cast<int>(std::min<int64_t>(G, in - c0));
            const float *x = w + row * in + c0;
            // The range includes 0, so that 0 is a level (as GPTQ's quantizer).
            float lo = 0, hi = 0;
            for (int i = 0; i < n; ++i) {
                lo = std::min(lo, x[i]);
                hi = std::max(hi, x[i]);
            }
            // Zero points stay in 1..15 (GPTQ's default layout stores zero - 1 in 4 bits): a group
            // with nothing below 0 takes zero 1 and 14 steps above it.
            const float steps = lo == 0.0f ? 14.0f : 15.0f;
            uint16_t s16 = f32_to_f16_bits((hi - lo) / steps);
            if (f16_bits_to_f32(s16) == 0.0f) s16 = f32_to_f16_bits(1.0f);  // an all-zero group
            const float s = f16_bits_to_f32(s16);
            const int zero = static_cast<int>(std::clamp(std::nearbyint(-lo / s), 1.0f, 15.0f));
            r.scales[row * ng + g] = s16;
            r.zeros[row * ng + g] = static_cast<uint8_t>(zero);
            for (int i = 0; i < n; ++i) {
                const int q = static_cast<int>(std::clamp(std::nearbyint(x[i] / s) + static_cast<float>(zero), 0.0f, 15.0f));
                const double e = static_cast<double>(x[i]) - static_cast<double>(static_cast<float>(q - zero) * s);
                row_err[row] += e * e;
                const int64_t c = c0 + i;
                r.weight[row * (in / 2) + c / 2] |= static_cast<uint8_t>(c % 2 == 0 ? q : q << 4);
            }
        }
    });
    double err = 0;
    for (double e : row_err) err += e;
    r.rmse = std::sqrt(err / static_cast<double>(out * in));
    return r;
}

// ---- Q4_K ----

namespace {

// llama.cpp's make_qkx2_quants(n = 32, nmax = 15, rmin = -1, rdelta = 0.1, nstep = 20, use_mad = false).
float make_qkx2_quants(const float *x, const float *weights, uint8_t *L, float *the_min, bool search) {
    constexpr int n = 32, nmax = 15;
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::fill(L, L + n, 0);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
        const float diff = scale * L[i] + min - x[i];
        best += weights[i] * diff * diff;
    }
    for (int is = 0; search && is <= 20; ++is) {
        iscale = (-1.0f + 0.1f * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            sum_l += weights[i] * l;
            sum_l2 += weights[i] * l * l;
            sum_xl += weights[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                mad += weights[i] * diff * diff;
            }
            if (mad < best) {
                std::copy(Laux, Laux + n, L);
                best = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

void q4k_block(const float *x, uint8_t *blk, bool search) {
    uint8_t L[256];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = search ? av_x + std::fabs(x[32 * j + l]) : 1.0f;
        scales[j] = make_qkx2_quants(x + 32 * j, weights, L + 32 * j, &mins[j], search);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *s = blk + 4;
    std::memset(s, 0, 12);
    for (int j = 0; j < 8; ++j) {
        const uint8_t ls = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
        const uint8_t lm = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
        if (j < 4) {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            s[j - 4] |= ((ls >> 4) << 6);
            s[j - 0] |= ((lm >> 4) << 6);
        }
    }
    const uint16_t d = f32_to_f16_bits(max_scale / 63.f), dmin = f32_to_f16_bits(max_min / 63.f);
    std::memcpy(blk, &d, 2);
    std::memcpy(blk + 2, &dmin, 2);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, s, &sc, &m);
        const float dd = f16_bits_to_f32(d) * sc;
        if (!dd) continue;
        const float dm = f16_bits_to_f32(dmin) * m;
        for (int ii = 0; ii < 32; ++ii) {
            L[32 * j + ii] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + ii] + dm) / dd), 0, 15));
        }
    }
    uint8_t *q = blk + 16;
    for (int j = 0; j < 256; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
        q += 32;
    }
}

BlockQuantized q4k(const float *w, int64_t out, int64_t in, bool search) {
    if (out <= 0 || in <= 0 || in % 256 != 0) {
        throw Error("quantize_q4k: shape [" + std::to_string(out) + ", " + std::to_string(in) +
                    "] needs in to be a positive multiple of 256");
    }
    BlockQuantized r;
    r.out = out;
    r.in = in;
    r.data.assign(out * (in / 256) * 144, 0);
    const int64_t nb = in / 256;
    parallel_rows(out, [&](int64_t row) {
        for (int64_t b = row * nb; b < (row + 1) * nb; ++b) q4k_block(w + b * 256, r.data.data() + b * 144, search);
    });
    std::vector<float> back(out * in);
    dequant(Weights{Format::q4_k, r.data.data(), out, in}, Matrix{back.data(), out, in});
    r.rmse = rmse(w, back.data(), out * in);
    return r;
}

}  // namespace

BlockQuantized quantize_q4k(const float *w, int64_t out, int64_t in) { return q4k(w, out, in, true); }
BlockQuantized quantize_q4k_minmax(const float *w, int64_t out, int64_t in) { return q4k(w, out, in, false); }

}  // namespace qforge

namespace qforge {

float fp8_e4m3_to_f32(uint8_t code) {
    const int e = (code >> 3) & 15, m = code & 7;
    if ((code & 0x7F) == 0x7F) return NAN;
    const float v = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(static_cast<float>(8 + m), e - 10);
    return code & 0x80 ? -v : v;
}

uint8_t f32_to_fp8_e4m3(float v) {
    if (std::isnan(v)) return 0x7F;
    const uint8_t sign = std::signbit(v) ? 0x80 : 0;
    const float a = std::fabs(v);
    // The 127 non-negative finite codes increase with their value: find the
    // nearest by bisection, ties to the even code (mantissa's last bit 0).
    int lo = 0, hi = 0x7E;
    if (a >= fp8_e4m3_to_f32(0x7E)) return sign | 0x7E;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        (fp8_e4m3_to_f32(static_cast<uint8_t>(mid)) <= a ? lo : hi) = mid;
    }
    const float dlo = a - fp8_e4m3_to_f32(static_cast<uint8_t>(lo)), dhi = fp8_e4m3_to_f32(static_cast<uint8_t>(hi)) - a;
    const int code = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    return static_cast<uint8_t>(sign | code);
}

std::vector<uint8_t> channel_rows(Format format, const uint8_t *codes, const float *scales, int64_t out, int64_t in,
                                  int64_t codes_stride) {
    const FormatTraits &t = traits(format);
    if (!t.row_head_bytes) throw Error(std::string(t.name) + " rows have no scale head (int8 and fp8 do)");
    if (out <= 0 || in <= 0 || in % t.block_elements != 0) {
        throw Error(std::string(t.name) + " weight [" + std::to_string(out) + ", " + std::to_string(in) +
                    "]: in must be a positive multiple of " + std::to_string(t.block_elements) +
                    " (rows are 32-byte units)");
    }
    const int64_t stride = codes_stride ? codes_stride : in, row = row_bytes(format, in);
    std::vector<uint8_t> rows(out * row, 0);
    for (int64_t r = 0; r < out; ++r) {
        if (!std::isfinite(scales[r])) {
            throw Error(std::string(t.name) + " weight: the scale of row " + std::to_string(r) + " is " +
                        std::to_string(scales[r]) + ", not finite");
        }
        std::memcpy(&rows[r * row], &scales[r], 4);
        std::memcpy(&rows[r * row + t.row_head_bytes], codes + r * stride, in);
    }
    return rows;
}

ChannelQuantized quantize_channels(Format format, const float *w, int64_t out, int64_t in) {
    if (format != Format::int8 && format != Format::fp8) {
        throw Error(std::string("quantize_channels: ") + to_string(format) + " is not a per-channel format (int8, fp8)");
    }
    const bool fp8 = format == Format::fp8;
    ChannelQuantized q;
    q.format = format;
    q.out = out;
    q.in = in;
    q.codes.resize(out * in);
    q.scales.resize(out);
    std::vector<float> back(out * in);
    for (int64_t r = 0; r < out; ++r) {
        const float *row = w + r * in;
        float amax = 0;
        for (int64_t k = 0; k < in; ++k) amax = std::max(amax, std::fabs(row[k]));
        const float s = amax > 0 ? amax / (fp8 ? 448.0f : 127.0f) : 1.0f;
        q.scales[r] = s;
        for (int64_t k = 0; k < in; ++k) {
            const float v = row[k] / s;
            uint8_t c;
            if (fp8) {
                c = f32_to_fp8_e4m3(v);
                back[r * in + k] = s * fp8_e4m3_to_f32(c);
            } else {
                const int i = static_cast<int>(std::clamp(std::nearbyint(v), -127.0f, 127.0f));
                c = static_cast<uint8_t>(static_cast<int8_t>(i));
                back[r * in + k] = s * static_cast<float>(i);
            }
            q.codes[r * in + k] = c;
        }
    }
    q.rmse = rmse(w, back.data(), out * in);
    return q;
}

std::vector<float> smoothing_scales(const float *act_max, int64_t in, const std::vector<const float *> &weights,
                                    const std::vector<int64_t> &outs, double alpha) {
    if (!(alpha >= 0 && alpha <= 1)) throw Error("smoothing: alpha = " + std::to_string(alpha) + " is not in [0, 1]");
    std::vector<float> wmax(in, 0.0f);
    for (size_t i = 0; i < weights.size(); ++i) {
        for (int64_t r = 0; r < outs[i]; ++r) {
            const float *row = weights[i] + r * in;
            for (int64_t j = 0; j < in; ++j) wmax[j] = std::max(wmax[j], std::fabs(row[j]));
        }
    }
    std::vector<float> s(in);
    for (int64_t j = 0; j < in; ++j) {
        if (!std::isfinite(act_max[j]) || act_max[j] < 0) {
            throw Error("smoothing: activation maximum " + std::to_string(act_max[j]) + " of channel " + std::to_string(j) +
                        " is not a finite value >= 0");
        }
        const double v = std::pow(std::max<double>(act_max[j], 1e-5), alpha) / std::pow(std::max<double>(wmax[j], 1e-5), 1 - alpha);
        s[j] = static_cast<float>(v);
    }
    return s;
}

}  // namespace qforge
