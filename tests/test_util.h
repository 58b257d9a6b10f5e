// Shared test helpers: random inputs, NaN poisoning, error measures, and the
// list of variants (kernel x target) that the tests are parameterised over.
#pragma once

#include "qforge/kernels.h"
#include "cuda_device.h"
#include "reference.h"
#include "registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace qforge::test {

// Fresh inputs every run; the seed is printed so a failure can be replayed
// with QF_SEED=<seed>.
inline uint64_t seed() {
    static const uint64_t s = [] {
        const char *env = std::getenv("QF_SEED");
        const uint64_t v = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
        std::printf("[ qforge  ] random seed %llu (replay with QF_SEED)\n", static_cast<unsigned long long>(v));
        return v;
    }();
    return s;
}

inline std::mt19937_64 &rng() {
    static std::mt19937_64 g(seed());
    return g;
}

// Runs `f`, expects a qforge::Error whose message contains every `needle`.
template <typename F>
inline void expect_error(F f, std::initializer_list<const char *> needles) {
    try {
        f();
        ADD_FAILURE() << "no error";
    } catch (const Error &e) {
        for (const char *n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

inline std::vector<float> random_floats(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) x = u(rng());
    return v;
}

inline std::vector<uint8_t> random_bytes(size_t n) {
    std::uniform_int_distribution<int> u(0, 255);
    std::vector<uint8_t> v(n);
    for (auto &x : v) x = static_cast<uint8_t>(u(rng()));
    return v;
}

inline uint16_t f16(float v) { return ref::f32_to_f16(v); }

// Random Q4_K rows. `realistic`: d, dmin of LLM-like magnitude (for matmul
// error bounds); otherwise any finite f16, subnormals and negatives included.
inline std::vector<uint8_t> random_q4k(int64_t out, int64_t in, bool realistic) {
    auto data = random_bytes(out * (in / 256) * 144);
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    std::uniform_int_distribution<int> bits(0, 0xFFFF);
    for (size_t blk = 0; blk < data.size(); blk += 144) {
        for (int field = 0; field < 2; ++field) {
            uint16_t h;
            if (realistic) {
                h = f16(scale(rng()));
            } else {
                do h = static_cast<uint16_t>(bits(rng())); while (((h >> 10) & 0x1F) == 0x1F);
            }
            data[blk + 2 * field] = h & 0xFF;
            data[blk + 2 * field + 1] = h >> 8;
        }
    }
    return data;
}

inline std::vector<uint16_t> random_f16(size_t n, float lo, float hi) {
    auto f = random_floats(n, lo, hi);
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = f16(f[i]);
    return h;
}

inline float nan_poison() { return std::numeric_limits<float>::quiet_NaN(); }

// A [rows, cols] output with `pad` extra poisoned columns per row.
struct Poisoned {
    int64_t rows, cols, stride;
    std::vector<float> data;
    Poisoned(int64_t r, int64_t c, int64_t pad = 0)
        : rows(r), cols(c), stride(c + pad), data(r * (c + pad), nan_poison()) {}
    Matrix view() { return {data.data(), rows, cols, stride}; }
    float at(int64_t r, int64_t c) const { return data[r * stride + c]; }
    // Every element written, every pad element untouched.
    void expect_all_written() const {
        int64_t unwritten = 0, clobbered = 0;
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < stride; ++c) {
                const bool is_nan = std::isnan(data[r * stride + c]);
                if (c < cols && is_nan) ++unwritten;
                if (c >= cols && !is_nan) ++clobbered;
            }
        }
        EXPECT_EQ(unwritten, 0) << "elements left NaN (not written) out of " << rows * cols;
        EXPECT_EQ(clobbered, 0) << "padding elements written past the end of a row";
    }
};

// Checks a f32-activation matmul against its float64 reference: every
// element within the rounding bound of f32 summation, |y - ref| <=
// (in + 2) 2^-24 sum|w x| (any summation order), and over the whole output
// ||y - ref|| / ||ref|| < 1e-5 where the output has enough elements for that
// norm not to be one cancellation-prone dot product.
inline void expect_matmul_close(const struct Poisoned &y, const std::vector<double> &ref,
                                const std::vector<double> &abs_terms, int64_t in);

// ||y - ref|| / ||ref|| over all elements.
inline double relative_error(const Poisoned &y, const std::vector<double> &ref) {
    double num = 0, den = 0;
    for (int64_t r = 0; r < y.rows; ++r) {
        for (int64_t c = 0; c < y.cols; ++c) {
            const double d = y.at(r, c) - ref[r * y.cols + c];
            num += d * d;
            den += ref[r * y.cols + c] * ref[r * y.cols + c];
        }
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// Every element within the f32 rounding bound of `terms` summands:
// |y - ref| <= (terms + 2) 2^-24 abs_terms.
inline void expect_within_rounding(const Poisoned &y, const std::vector<double> &ref,
                                   const std::vector<double> &abs_terms, double terms) {
    int64_t outside = 0;
    for (int64_t r = 0; r < y.rows; ++r) {
        for (int64_t c = 0; c < y.cols; ++c) {
            const double err = std::fabs(y.at(r, c) - ref[r * y.cols + c]);
            const double bound = (terms + 2) * std::ldexp(1.0, -24) * abs_terms[r * y.cols + c] + 1e-30;
            if (!(err <= bound) && ++outside <= 3) {
                ADD_FAILURE() << "[" << r << ", " << c << "]: |" << y.at(r, c) << " - " << ref[r * y.cols + c]
                              << "| = " << err << " > " << bound;
            }
        }
    }
    EXPECT_EQ(outside, 0);
}

inline void expect_matmul_close(const Poisoned &y, const std::vector<double> &ref,
                                const std::vector<double> &abs_terms, int64_t in) {
    expect_within_rounding(y, ref, abs_terms, static_cast<double>(in));
    if (y.rows * y.cols >= 16) EXPECT_LT(relative_error(y, ref), 1e-5);
}

// Bit-for-bit equality of a dequantized [rows, cols] output with the reference.
inline void expect_bitwise_equal(const Poisoned &y, const std::vector<float> &ref) {
    int64_t mismatches = 0;
    for (int64_t r = 0; r < y.rows; ++r) {
        for (int64_t c = 0; c < y.cols; ++c) {
            const float a = y.at(r, c), b = ref[r * y.cols + c];
            if (std::memcmp(&a, &b, 4) != 0 && ++mismatches <= 3) {
                ADD_FAILURE() << "row " << r << " col " << c << ": " << a << " != " << b;
            }
        }
    }
    EXPECT_EQ(mismatches, 0);
}

// An f16 [rows, cols] output (IEEE binary16 bits) with `pad` extra columns
// per row, all poisoned with an f16 NaN.
struct PoisonedF16 {
    static constexpr uint16_t kPoison = 0x7E01;
    int64_t rows, cols, stride;
    std::vector<uint16_t> data;
    PoisonedF16(int64_t r, int64_t c, int64_t pad = 0) : rows(r), cols(c), stride(c + pad), data(r * (c + pad), kPoison) {}
    // Every element is ref rounded to nearest even, bit for bit; padding untouched.
    void expect_f16_of(const std::vector<float> &ref) const {
        int64_t mismatches = 0, clobbered = 0;
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < stride; ++c) {
                const uint16_t got = data[r * stride + c];
                if (c >= cols) {
                    clobbered += got != kPoison;
                } else if (got != ref::f32_to_f16(ref[r * cols + c]) && ++mismatches <= 3) {
                    ADD_FAILURE() << "row " << r << " col " << c << ": f16 bits " << got << " != f16("
                                  << ref[r * cols + c] << ")";
                }
            }
        }
        EXPECT_EQ(mismatches, 0);
        EXPECT_EQ(clobbered, 0) << "padding elements written past the end of a row";
    }
};

// Q4_K matmul shapes: out not a multiple of any vector width, tokens in
// {1, 2, 3, 7, 64, 129}, in from 256 to 14336, bias on and off, padded strides.
struct MatmulCase {
    int64_t out, in, tokens;
    bool bias;
    int64_t pad;
    std::string name() const {
        return "out=" + std::to_string(out) + " in=" + std::to_string(in) + " tokens=" + std::to_string(tokens) +
               (bias ? " bias" : " no bias") + " pad=" + std::to_string(pad);
    }
};

inline const std::vector<MatmulCase> &q4k_matmul_cases() {
    static const std::vector<MatmulCase> cases = {
        {1, 256, 1, false, 0},  {3, 512, 2, true, 0},    {257, 256, 3, false, 3}, {5, 14336, 1, true, 0},
        {17, 4096, 7, false, 0}, {33, 768, 64, true, 2}, {7, 2304, 129, false, 0}, {257, 1024, 1, true, 1},
    };
    return cases;
}

// One variant of the kernel table (a row on a target), as a test parameter.
struct VariantParam {
    const internal::KernelRow *row = nullptr;
    std::string kernel, target;   // kernel_name(*row), for messages and RunOptions::kernel
    // RunOptions::shape_class: the variant's class (a tuning database's), or
    // "-" for the kernel's own, so that each variant runs whatever the test's shapes.
    std::string shape_class = "-";
};

using internal::KernelRow;
using internal::Epi;
using internal::Op;
using internal::Out;
inline bool is_matmul(const KernelRow &r) { return r.op == Op::matvec || r.op == Op::matmul; }

// Which suites took each variant as a parameter. Every INSTANTIATE_TEST_SUITE_P
// generator runs before any test does, so by then this is complete
// (Registry.EveryVariantIsTested checks that no variant is left out).
inline std::map<const internal::Variant *, std::vector<std::string>> &claims() {
    static std::map<const internal::Variant *, std::vector<std::string>> c;
    return c;
}

// Every variant of the rows `keep` accepts, claimed by `suite`.
template <typename Keep>
std::vector<VariantParam> variants_where(const std::string &suite, Keep keep) {
    std::vector<VariantParam> out;
    for (const internal::Variant &v : internal::variants()) {
        if (!keep(*v.row)) continue;
        claims()[&v].push_back(suite);
        out.push_back({v.row, internal::kernel_name(*v.row), v.target, *v.shape_class ? v.shape_class : "-"});
    }
    return out;
}

// The variants of a weight format's kernels of one kind (the glu
// epilogue's rows are a kind of their own: test_block.cpp's GluEpilogue).
inline std::vector<VariantParam> weight_variants(const std::string &suite, Format f, std::initializer_list<Op> op_list,
                                                 ActType act = ActType::f32, bool norm = false) {
    const std::vector<Op> ops(op_list);
    return variants_where(suite, [&](const KernelRow &r) {
        return r.weights && r.format == f && std::find(ops.begin(), ops.end(), r.op) != ops.end() &&
               (!r.has_act || r.act == act) && r.norm == norm && r.epi == Epi::plain;
    });
}

inline void PrintTo(const VariantParam &p, std::ostream *os) { *os << p.kernel << " on " << p.target; }

inline std::string variant_name(const testing::TestParamInfo<VariantParam> &info) {
    std::string s = info.param.kernel + "__" + info.param.target;
    if (info.param.shape_class != "-") s += "__" + info.param.shape_class;
    for (auto &c : s) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    return s;
}

constexpr const char *kNoCudaBuilt = "CUDA variants not built: no CUDA toolkit at configure time (-DQF_CUDA=ON builds them)";

// Whether this build has CUDA variants.
inline bool cuda_built() {
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.family) == "cuda") return true;
    }
    return false;
}

// Why CUDA layers cannot run here (a build without CUDA variants, or no
// device), or empty: a GPU machine can run a CPU-only build's tests.
inline std::string why_no_cuda() {
    if (!cuda_built()) return kNoCudaBuilt;
    const auto &d = internal::cuda_device();
    if (!d.present) return "no CUDA device here (" + d.why_absent + "); the device run covers it";
    return "";
}

// Why `target` cannot run here, or empty.
inline std::string why_not_runnable(const std::string &target) {
    if (qforge::cpu_can_run(target)) return "";
    if (internal::is_cuda_target(target)) {
        const auto &d = internal::cuda_device();
        if (!d.present) return "no CUDA device here (" + d.why_absent + "); the device run covers it";
        return target + " needs a newer compute capability than this " + d.name;
    }
    return target + " cannot run on this CPU: it lacks some of its features";
}

#define QF_SKIP_UNLESS_RUNNABLE(p)                                                 \
    if (const std::string why = qforge::test::why_not_runnable((p).target); !why.empty()) { \
        GTEST_SKIP() << why;                                                       \
    }

inline RunOptions options(const VariantParam &p) {
    RunOptions o;
    o.target = p.target;
    o.kernel = p.kernel;
    o.shape_class = p.shape_class;
    if (internal::is_cuda_target(p.target)) o.memory = Memory::cuda;
    return o;
}

// The memory a variant runs on. Host variants get the test's own vectors;
// CUDA variants get device copies: inputs uploaded (and checked unchanged
// afterwards), outputs uploaded poisoned and downloaded by sync().
class Mem {
public:
    explicit Mem(const VariantParam &p) : cuda_(internal::is_cuda_target(p.target)) {}
    Mem(const Mem &) = delete;
    ~Mem() {
        for (auto &b : bufs_) internal::cuda_free(b.dev);
    }

    template <typename T>
    const T *in(const std::vector<T> &v) {
        if (!cuda_) return v.data();
        return static_cast<const T *>(mirror(const_cast<T *>(v.data()), v.size() * sizeof(T), false));
    }
    template <typename T>
    T *out(std::vector<T> &v) {
        if (!cuda_) return v.data();
        return static_cast<T *>(mirror(v.data(), v.size() * sizeof(T), true));
    }
    Matrix out(struct Poisoned &y);
    MatrixF16 out(PoisonedF16 &y) { return {out(y.data), y.rows, y.cols, y.stride}; }

    // Waits for the kernels, brings outputs back, checks inputs unchanged.
    void sync() {
        if (!cuda_) return;
        internal::cuda_synchronize();
        for (auto &b : bufs_) {
            if (b.is_out) {
                internal::cuda_download(b.host, b.dev, b.bytes);
            } else {
                std::vector<unsigned char> after(b.bytes);
                internal::cuda_download(after.data(), b.dev, b.bytes);
                EXPECT_EQ(0, std::memcmp(after.data(), b.host, b.bytes)) << "the kernel modified a device input";
            }
        }
    }

private:
    struct Buf {
        void *host, *dev;
        size_t bytes;
        bool is_out;
    };
    void *mirror(void *host, size_t bytes, bool is_out) {
        void *dev = internal::cuda_alloc(std::max<size_t>(bytes, 1));
        internal::cuda_upload(dev, host, bytes);
        bufs_.push_back({host, dev, bytes, is_out});
        return dev;
    }
    bool cuda_;
    std::vector<Buf> bufs_;
};

inline Matrix Mem::out(Poisoned &y) { return {out(y.data), y.rows, y.cols, y.stride}; }

// Runs a dequantizer into a poisoned output, f32 or (for "*_dequant_f16*"
// kernels) f16, and checks every element against `ref` (f32) bit for bit:
// run(out) calls the entry point with out a Matrix or a MatrixF16.
template <typename Run>
void expect_dequant(const VariantParam &p, Mem &m, int64_t rows, int64_t cols, int64_t pad,
                    const std::vector<float> &ref, Run run) {
    if (p.row->out == Out::f16) {
        PoisonedF16 y(rows, cols, pad);
        run(m.out(y));
        m.sync();
        y.expect_f16_of(ref);
        return;
    }
    Poisoned y(rows, cols, pad);
    run(m.out(y));
    m.sync();
    y.expect_all_written();
    expect_bitwise_equal(y, ref);
}

}  // namespace qforge::test
