#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace qforge::ref {

float f16_to_f32(uint16_t h) {
    const int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    float v;
    if (exponent == 0) {
        v = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
    } else if (exponent == 31) {
        v = mantissa ? NAN : INFINITY;
    } else {
        v = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
    }
    return sign ? -v : v;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = (x >> 16) & 0x8000;
    const float a = std::fabs(f);
    if (std::isnan(f)) return sign | 0x7E00;
    if (a >= 65520.0f) return sign | 0x7C00;
    if (a < std::ldexp(1.0f, -14)) {  // subnormal: multiples of 2^-24
        return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
    }
    int e;
    const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    uint32_t mant = static_cast<uint32_t>(std::nearbyint(std::ldexp(m, 11)));  // 11 significant bits
    if (mant == 2048) { mant = 1024; ++e; }
    return sign | static_cast<uint16_t>(((e + 14) << 10) | (mant & 0x3FF));
}

float bf16_to_f32(uint16_t h) {
    const uint32_t x = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &x, 4);
    return v;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    return static_cast<uint16_t>(x >> 16);
}

static int64_t groups(int64_t in, int g) { return (in + g - 1) / g; }

void int4z_dequant(const uint8_t *weight, const uint16_t *scales, const uint8_t *zeros, int64_t out, int64_t in,
                   int group_size, float *w) {
    const int64_t ng = groups(in, group_size);
    for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) {
            const uint8_t byte = weight[r * (in / 2) + c / 2];
            const int nibble = (c % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
            const float scale = f16_to_f32(scales[r * ng + c / group_size]);
            const int zero = zeros ? zeros[r * ng + c / group_size] : 8;
            w[r * in + c] = static_cast<float>(nibble - zero) * scale;
        }
    }
}

void int4g_dequant(const uint8_t *weight, const uint16_t *scales, int64_t out, int64_t in, int group_size,
                   float *w) {
    int4z_dequant(weight, scales, nullptr, out, in, group_size, w);
}

// y = x * w^T + bias in float64 over float32 weights.
void dense_matmul(const std::vector<float> &w, int64_t out, int64_t in, const float *x, int64_t tokens,
                         const float *bias, double *y, double *abs_terms) {
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t r = 0; r < out; ++r) {
            double s = bias ? bias[r] : 0.0, mag = bias ? std::fabs(bias[r]) : 0.0;
            for (int64_t c = 0; c < in; ++c) {
                const double t = static_cast<double>(w[r * in + c]) * x[n * in + c];
                s += t;
                mag += std::fabs(t);
            }
            y[n * out + r] = s;
            if (abs_terms) abs_terms[n * out + r] = mag;
        }
    }
}

void int4g_matmul(const uint8_t *weight, const uint16_t *scales, int64_t out, int64_t in, int group_size,
                  const float *x, int64_t tokens, const float *bias, double *y, double *abs_terms) {
    std::vector<float> w(out * in);
    int4g_dequant(weight, scales, out, in, group_size, w.data());
    dense_matmul(w, out, in, x, tokens, bias, y, abs_terms);
}

void int4z_matmul(const uint8_t *weight, const uint16_t *scales, const uint8_t *zeros, int64_t out, int64_t in,
                  int group_size, const float *x, int64_t tokens, const float *bias, double *y, double *abs_terms) {
    std::vector<float> w(out * in);
    int4z_dequant(weight, scales, zeros, out, in, group_size, w.data());
    dense_matmul(w, out, in, x, tokens, bias, y, abs_terms);
}

// The six-bit scale and min of sub-block j (FORMATS.md).
static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void q4k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    const int64_t nb = in / 256;
    for (int64_t r = 0; r < out; ++r) {
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t *blk = data + (r * nb + b) * 144;
            const float d = f16_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
            const float dmin = f16_to_f32(static_cast<uint16_t>(blk[2] | (blk[3] << 8)));
            const uint8_t *qs = blk + 16;
            for (int i = 0; i < 4; ++i) {
                for (int h = 0; h < 2; ++h) {
                    const int j = 2 * i + h;
                    int sc, m;
                    q4k_scale_min(blk + 4, j, &sc, &m);
                    const float scale = d * static_cast<float>(sc);
                    const float min = dmin * static_cast<float>(m);
                    for (int l = 0; l < 32; ++l) {
                        const int q = h == 0 ? (qs[32 * i + l] & 0x0F) : (qs[32 * i + l] >> 4);
                        w[r * in + b * 256 + 32 * j + l] = scale * static_cast<float>(q) - min;
                    }
                }
            }
        }
    }
}

void q4k_matmul_f32(const uint8_t *data, int64_t out, int64_t in, const float *x, int64_t tokens,
                    const float *bias, double *y, double *abs_terms) {
    std::vector<float> w(out * in);
    q4k_dequant(data, out, in, w.data());
    dense_matmul(w, out, in, x, tokens, bias, y, abs_terms);
}

static int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }  // ties to even

void q8k_quantize(const float *x, int64_t tokens, int64_t in, float *d, int8_t *qs, int16_t *bsums) {
    const int64_t nb = in / 256;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t b = 0; b < nb; ++b) {
            const float *v = x + n * in + b * 256;
            float amax = 0.0f, max = 0.0f;
            for (int i = 0; i < 256; ++i) {
                if (std::fabs(v[i]) > amax) {
                    amax = std::fabs(v[i]);
                    max = v[i];
                }
            }
            int8_t *q = qs + n * in + b * 256;
            int16_t *s = bsums + n * (in / 16) + b * 16;
            if (amax == 0.0f) {
                d[n * nb + b] = 0.0f;
                for (int i = 0; i < 256; ++i) q[i] = 0;
                for (int i = 0; i < 16; ++i) s[i] = 0;
                continue;
            }
            const float iscale = -127.0f / max;
            for (int i = 0; i < 256; ++i) q[i] = static_cast<int8_t>(std::min(127, nearest_int(iscale * v[i])));
            for (int i = 0; i < 16; ++i) {
                int sum = 0;
                for (int k = 0; k < 16; ++k) sum += q[16 * i + k];
                s[i] = static_cast<int16_t>(sum);
            }
            d[n * nb + b] = 1.0f / iscale;
        }
    }
}

void q4k_matmul_q8(const uint8_t *data, int64_t out, int64_t in, const float *d, const int8_t *qs,
                   const int16_t *bsums, int64_t tokens, const float *bias, double *y, double *abs_terms) {
    const int64_t nb = in / 256;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t r = 0; r < out; ++r) {
            double sum = bias ? bias[r] : 0.0, mag = bias ? std::fabs(bias[r]) : 0.0;
            for (int64_t b = 0; b < nb; ++b) {
                const uint8_t *blk = data + (r * nb + b) * 144;
                const double wd = f16_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
                const double wdmin = f16_to_f32(static_cast<uint16_t>(blk[2] | (blk[3] << 8)));
                const int8_t *a = qs + n * in + b * 256;
                const int16_t *bs = bsums + n * (in / 16) + b * 16;
                int32_t isum = 0, msum = 0;
                int64_t abs_products = 0;  // sum_j sc_j sum_l |q a|: bounds every partial sum
                for (int j = 0; j < 8; ++j) {
                    int sc, m;
                    q4k_scale_min(blk + 4, j, &sc, &m);
                    int32_t dot = 0;
                    for (int l = 0; l < 32; ++l) {
                        const uint8_t byte = blk[16 + 32 * (j / 2) + l];
                        const int q = (j % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
                        dot += q * a[32 * j + l];
                        abs_products += static_cast<int64_t>(sc) * std::abs(q * a[32 * j + l]);
                    }
                    isum += sc * dot;
                    msum += m * (bs[2 * j] + bs[2 * j + 1]);
                }
                const double ad = d[n * nb + b];
                const double t1 = ad * wd * isum, t2 = ad * wdmin * msum;
                sum += t1 - t2;
                mag += std::fabs(ad * wd) * static_cast<double>(abs_products) + std::fabs(t2);
            }
            y[n * out + r] = sum;
            if (abs_terms) abs_terms[n * out + r] = mag;
        }
    }
}

static float block_d(const uint8_t *p) { return f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

void q4_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 18;
        const float d = block_d(b);
        for (int l = 0; l < 16; ++l) {
            w[blk * 32 + l] = d * static_cast<float>((b[2 + l] & 0x0F) - 8);
            w[blk * 32 + l + 16] = d * static_cast<float>((b[2 + l] >> 4) - 8);
        }
    }
}

void q4_1_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 20;
        const float d = block_d(b), m = block_d(b + 2);
        for (int l = 0; l < 16; ++l) {
            w[blk * 32 + l] = d * static_cast<float>(b[4 + l] & 0x0F) + m;
            w[blk * 32 + l + 16] = d * static_cast<float>(b[4 + l] >> 4) + m;
        }
    }
}

// Q5_0 / Q5_1: weight l's fifth bit is bit l of the little-endian uint32 qh.
static int q5_quant(const uint8_t *qh, const uint8_t *qs, int l) {
    const uint32_t h = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (static_cast<uint32_t>(qh[3]) << 24);
    const int lo = l < 16 ? (qs[l] & 0x0F) : (qs[l - 16] >> 4);
    return lo | (((h >> l) & 1) << 4);
}

void q5_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 22;
        const float d = block_d(b);
        for (int l = 0; l < 32; ++l) w[blk * 32 + l] = d * static_cast<float>(q5_quant(b + 2, b + 6, l) - 16);
    }
}

void q5_1_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 24;
        const float d = block_d(b), m = block_d(b + 2);
        for (int l = 0; l < 32; ++l) w[blk * 32 + l] = d * static_cast<float>(q5_quant(b + 4, b + 8, l)) + m;
    }
}

void q8_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 34;
        const float d = block_d(b);
        for (int l = 0; l < 32; ++l) w[blk * 32 + l] = static_cast<float>(static_cast<int8_t>(b[2 + l])) * d;
    }
}

void q6k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 256); ++blk) {
        const uint8_t *b = data + blk * 210;
        const float d = block_d(b + 208);
        float *y = w + blk * 256;
        for (int h = 0; h < 2; ++h) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const int8_t *sc = reinterpret_cast<const int8_t *>(b + 192 + 8 * h);
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[128 * h + l] = (d * static_cast<float>(sc[is + 0])) * static_cast<float>(q1);
                y[128 * h + l + 32] = (d * static_cast<float>(sc[is + 2])) * static_cast<float>(q2);
                y[128 * h + l + 64] = (d * static_cast<float>(sc[is + 4])) * static_cast<float>(q3);
                y[128 * h + l + 96] = (d * static_cast<float>(sc[is + 6])) * static_cast<float>(q4);
            }
        }
    }
}

// Q2_K as ggml's dequantize_row_q2_K: 2 halves of 128, each 4 shifts of 32
// weights in two sub-blocks of 16.
void q2k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 256); ++blk) {
        const uint8_t *b = data + blk * 84;
        const float d = block_d(b + 80), dmin = block_d(b + 82);
        float *y = w + blk * 256;
        int is = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t *q = b + 16 + 32 * h;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = b[is++];
                    const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[16 * half + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

// Q3_K as ggml's dequantize_row_q3_K: the 16 6-bit scales unpacked first.
void q3k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 256); ++blk) {
        const uint8_t *b = data + blk * 110, *hm = b, *s = b + 96;
        const float d = block_d(b + 108);
        int scales[16];
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
            const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
            scales[j] = (lo | (hi << 4)) - 32;
        }
        float *y = w + blk * 256;
        int is = 0;
        uint8_t m = 1;
        for (int h = 0; h < 2; ++h) {
            const uint8_t *q = b + 32 + 32 * h;
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; ++half) {
                    const float dl = d * static_cast<float>(scales[is++]);
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *y++ = dl * static_cast<float>(v);
                    }
                }
            }
        }
    }
}

// Q5_K as ggml's dequantize_row_q5_K: 4 chunks of 64, low then high nibbles,
// with bits 2i and 2i+1 of qh on top.
void q5k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 256); ++blk) {
        const uint8_t *b = data + blk * 176, *qh = b + 16;
        const float d = block_d(b), dmin = block_d(b + 2);
        float *y = w + blk * 256;
        for (int i = 0; i < 4; ++i) {
            const uint8_t *ql = b + 48 + 32 * i;
            for (int h = 0; h < 2; ++h) {
                int sc, m;
                q4k_scale_min(b + 4, 2 * i + h, &sc, &m);
                const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
                for (int l = 0; l < 32; ++l) {
                    const int lo = h == 0 ? (ql[l] & 0xF) : (ql[l] >> 4);
                    const int v = lo + (((qh[l] >> (2 * i + h)) & 1) << 4);
                    *y++ = d1 * static_cast<float>(v) - m1;
                }
            }
        }
    }
}

static const int8_t kIQ4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void iq4_nl_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 32); ++blk) {
        const uint8_t *b = data + blk * 18;
        const float d = block_d(b);
        for (int l = 0; l < 16; ++l) {
            w[blk * 32 + l] = d * static_cast<float>(kIQ4Levels[b[2 + l] & 0xF]);
            w[blk * 32 + l + 16] = d * static_cast<float>(kIQ4Levels[b[2 + l] >> 4]);
        }
    }
}

// IQ4_XS as ggml's dequantize_row_iq4_xs.
void iq4_xs_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    for (int64_t blk = 0; blk < out * (in / 256); ++blk) {
        const uint8_t *b = data + blk * 136;
        const float d = block_d(b);
        const int scales_h = b[2] | (b[3] << 8);
        float *y = w + blk * 256;
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * static_cast<float>(ls - 32);
            const uint8_t *qs = b + 8 + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * static_cast<float>(kIQ4Levels[qs[j] & 0xF]);
                y[j + 16] = dl * static_cast<float>(kIQ4Levels[qs[j] >> 4]);
            }
            y += 32;
        }
    }
}

// The references of the block formats, one row each.
float fp8_e4m3(uint8_t code) {
    const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
    const double v = e == 0 ? m / 512.0 : std::pow(2.0, e - 7) * (1.0 + m / 8.0);
    return static_cast<float>(s ? -v : v);
}

namespace {
template <typename Value>
void channel_rows_dequant(const uint8_t *data, int64_t out, int64_t in, float *w, Value value) {
    for (int64_t r = 0; r < out; ++r) {
        const uint8_t *row = data + r * (32 + in);
        float scale;
        std::memcpy(&scale, row, 4);
        for (int64_t k = 0; k < in; ++k) w[r * in + k] = scale * value(row[32 + k]);
    }
}
}  // namespace

void int8_rows_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    channel_rows_dequant(data, out, in, w, [](uint8_t c) { return static_cast<float>(static_cast<int8_t>(c)); });
}
void fp8_rows_dequant(const uint8_t *data, int64_t out, int64_t in, float *w) {
    channel_rows_dequant(data, out, in, w, fp8_e4m3);
}

void block_dequant(Format f, const uint8_t *data, int64_t out, int64_t in, float *w) {
    static const struct {
        Format format;
        void (*dequant)(const uint8_t *, int64_t, int64_t, float *);
    } kBlocks[] = {
        {Format::q4_k, q4k_dequant}, {Format::q6_k, q6k_dequant}, {Format::q8_0, q8_0_dequant},
        {Format::q4_0, q4_0_dequant}, {Format::q4_1, q4_1_dequant}, {Format::q5_0, q5_0_dequant},
        {Format::q5_1, q5_1_dequant}, {Format::q2_k, q2k_dequant}, {Format::q3_k, q3k_dequant},
        {Format::q5_k, q5k_dequant}, {Format::iq4_nl, iq4_nl_dequant}, {Format::iq4_xs, iq4_xs_dequant},
        {Format::int8, int8_rows_dequant}, {Format::fp8, fp8_rows_dequant},
    };
    for (const auto &b : kBlocks) {
        if (b.format == f) return b.dequant(data, out, in, w);
    }
    throw std::runtime_error(std::string("no reference dequantizer for ") + to_string(f));
}

void q8_0_quantize(const float *x, int64_t tokens, int64_t in, float *d, int8_t *qs, int16_t *sums) {
    const int64_t nb = in / 32;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t b = 0; b < nb; ++b) {
            const float *v = x + n * in + b * 32;
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
            const float iscale = amax == 0.0f ? 0.0f : 127.0f / amax;
            int8_t *q = qs + n * in + b * 32;
            int sum = 0;
            for (int i = 0; i < 32; ++i) {
                q[i] = static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(iscale * v[i])), -127, 127));
                sum += q[i];
            }
            d[n * nb + b] = amax * (1.0f / 127.0f);
            sums[n * nb + b] = static_cast<int16_t>(sum);
        }
    }
}

void matmul_q8(const float *w, int64_t out, int64_t in, int block, const float *d, const int8_t *qs, int64_t tokens,
               const float *bias, double *y, double *abs_terms) {
    const int64_t nb = in / block;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t r = 0; r < out; ++r) {
            double acc = bias ? bias[r] : 0.0, mag = bias ? std::fabs(bias[r]) : 0.0;
            for (int64_t b = 0; b < nb; ++b) {
                double s = 0, m = 0;
                for (int k = 0; k < block; ++k) {
                    const double t = static_cast<double>(w[r * in + block * b + k]) * qs[n * in + block * b + k];
                    s += t;
                    m += std::fabs(t);
                }
                acc += d[n * nb + b] * s;
                mag += std::fabs(d[n * nb + b]) * m;
            }
            y[n * out + r] = acc;
            if (abs_terms) abs_terms[n * out + r] = mag;
        }
    }
}

}  // namespace qforge::ref
