// qforge against its peers in one run, on the same machine, shapes, threads
// and input data (issue: benchmarks against ggml and the roofline):
//   qforge layers (Q4_K; int4g G=32 and Q4_0; int4z G=32 (zero points, GPTQ's
//   and AWQ's arithmetic) against ggml's Q4_1, its asymmetric peer; Q8_0 and int8 per channel against
//   ggml's Q8_0; Q6_K; IQ4_XS), ggml's CPU kernels
//   through ggml_mul_mat on a graph (plain and with its weight repacking),
//   the eager baseline (qforge dequantizes once, OpenBLAS sgemm per call)
//   and the scalar reference (decode only: it is float64 and slow).
// Every implementation sees the same quantized weights (ggml's Q4_0 blocks
// are the int4g G=32 values re-laid out, its Q4_1 blocks int4z's with m =
// -d z rounded to f16; Q4_K and Q8_0 bytes are shared) and
// the same activations, and quantizes its activations inside its own time.
// Implementations are interleaved within each round; each row is printed as
// one JSON line for bench/report.py.
//
// Usage: qforge_compare --threads T [--quick] [--rounds N] [--only NAME_PART] [--impl NAME,...] [--tokens N]
//        [--shape "MODEL LAYER" part, e.g. qwen3] > results.jsonl
// One thread count per process (bench/compare.sh runs 1 and all cores):
// Halide's pool, once it has started workers, does not shrink reliably when
// asked for fewer within a process, so thread counts never share one.
#include "ggml_peer.h"

#include "qforge/layers.h"
#include "qforge/quantize.h"
#include "qforge/roofline.h"
#include "reference.h"

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace qforge;
using json = nlohmann::json;

struct Shape {
    const char *model, *layer;
    int64_t out, in;
};

// One implementation of one configuration: run(copy) computes y from x with
// the copy-th rotating weight copy.
struct Impl {
    std::string name, family;   // family: the weight data it shares (q4_k, q4_0, q8_0, q6_k, iq4_xs)
    int copies = 1;
    std::function<void(int)> run;
};

// Weights to Q8_0 as ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(w / d).
std::vector<uint8_t> quantize_q8_0(const std::vector<float> &w, int64_t out, int64_t in) {
    std::vector<uint8_t> b(out * in / 32 * 34);
    for (int64_t blk = 0; blk < out * in / 32; ++blk) {
        const float *v = &w[blk * 32];
        float amax = 0;
        for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(v[l]));
        const float d = amax / 127.0f;
        const uint16_t h = ref::f32_to_f16(d);
        const float id = d ? 1.0f / d : 0.0f;
        uint8_t *p = &b[blk * 34];
        p[0] = h & 0xFF;
        p[1] = h >> 8;
        for (int l = 0; l < 32; ++l) p[2 + l] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(v[l] * id)));
    }
    return b;
}

// Weights to Q6_K (FORMATS.md) by the plain rule: sub-block scales
// amax / 31, stored as int8 multiples of d = max scale / 127, q = round(w /
// (d sc)) + 32 in 0..63. Not ggml's error-minimising search: the benchmark
// times kernels, and every implementation reads the same bytes.
std::vector<uint8_t> quantize_q6k(const std::vector<float> &w, int64_t out, int64_t in) {
    std::vector<uint8_t> b(out * in / 256 * 210, 0);
    for (int64_t sb = 0; sb < out * in / 256; ++sb) {
        const float *v = &w[sb * 256];
        uint8_t *p = &b[sb * 210];
        float s[16], smax = 0;
        for (int j = 0; j < 16; ++j) {
            float amax = 0;
            for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(v[16 * j + l]));
            s[j] = amax / 31.0f;
            smax = std::max(smax, s[j]);
        }
        const uint16_t h = ref::f32_to_f16(smax / 127.0f);
        const float d = ref::f16_to_f32(h);
        p[208] = h & 0xFF;
        p[209] = h >> 8;
        for (int j = 0; j < 16; ++j) {
            const int sc = d > 0 ? static_cast<int>(std::min(127L, std::lround(s[j] / d))) : 0;
            p[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc));
            for (int l = 0; l < 16; ++l) {
                const int k = 16 * j + l;
                const long q = sc ? std::clamp(std::lround(v[k] / (d * sc)), -32L, 31L) + 32 : 32;
                const int c = k / 128, i = (k / 32) % 4, kl = k % 32;
                p[64 * c + 32 * (i % 2) + kl] |= static_cast<uint8_t>((q & 15) << (4 * (i / 2)));
                p[128 + 32 * c + kl] |= static_cast<uint8_t>((q >> 4) << (2 * i));
            }
        }
    }
    return b;
}

// IQ4_XS blocks of random indices and 6-bit scales under a d of the
// weights' magnitude: gguf-py and qforge have no IQ4 quantizer, and the
// benchmark times kernels on the same bytes, whatever they decode to.
std::vector<uint8_t> random_iq4_xs(int64_t out, int64_t in) {
    std::vector<uint8_t> b(out * in / 256 * 136);
    std::mt19937 g(7);
    for (auto &v : b) v = static_cast<uint8_t>(g());
    for (size_t k = 0; k < b.size(); k += 136) {
        const uint16_t h = ref::f32_to_f16(0.0005f);
        b[k] = h & 0xFF;
        b[k + 1] = h >> 8;
    }
    return b;
}

// int4g / int4z G=32 as ggml blocks (FORMATS.md): Q4_0 (d, nibbles) or,
// with zero points, Q4_1 (d, m = -d z rounded to f16, nibbles). Byte j of a
// block holds columns j (low) and j + 16 (high).
std::vector<uint8_t> int4_to_ggml_blocks(const Int4gQuantized &q, int64_t out, int64_t in) {
    const bool min = !q.zeros.empty();
    const int bytes = min ? 20 : 18, at = min ? 4 : 2;
    std::vector<uint8_t> b(out * in / 32 * bytes);
    auto nib = [&](int64_t r, int64_t c) { return (q.weight[r * in / 2 + c / 2] >> (4 * (c % 2))) & 15; };
    auto put16 = [](uint8_t *p, uint16_t v) {
        p[0] = v & 0xFF;
        p[1] = v >> 8;
    };
    for (int64_t r = 0; r < out; ++r) {
        for (int64_t g = 0; g < in / 32; ++g) {
            uint8_t *p = &b[(r * in / 32 + g) * bytes];
            const uint16_t d = q.scales[r * (in / 32) + g];
            put16(p, d);
            if (min) put16(p + 2, ref::f32_to_f16(-ref::f16_to_f32(d) * q.zeros[r * (in / 32) + g]));
            for (int j = 0; j < 16; ++j) p[at + j] = static_cast<uint8_t>(nib(r, g * 32 + j) | (nib(r, g * 32 + j + 16) << 4));
        }
    }
    return b;
}

std::string cpu_name() {
    std::FILE *f = std::fopen("/proc/cpuinfo", "r");
    char line[512];
    std::string name = "unknown";
    while (f && std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, "model name", 10) == 0) {
            name = std::strchr(line, ':') + 2;
            name.erase(name.find_last_not_of("\n") + 1);
            break;
        }
    }
    if (f) std::fclose(f);
    return name;
}

// Enough copies of `bytes` (384 MiB in all, over ten times this machine's
// last-level cache) that every call streams its weights from DRAM.
int copies_for(int64_t bytes) {
    return static_cast<int>(std::clamp<int64_t>((int64_t{384} << 20) / std::max<int64_t>(bytes, 1), 1, 128));
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Median seconds per call of `run`, over at least `min_calls` calls and `min_s` seconds, after one warm-up.
double time_impl(const Impl &impl, double min_s, int min_calls) {
    // Let the previous implementation's worker threads (OpenMP, OpenBLAS,
    // Halide) stop spinning, so that they do not take this one's cores.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    int copy = 0;
    impl.run(copy++ % impl.copies);
    std::vector<double> t;
    const double start = now();
    while (static_cast<int>(t.size()) < min_calls || now() - start < min_s) {
        const double t0 = now();
        impl.run(copy++ % impl.copies);
        t.push_back(now() - t0);
        if (t.size() >= 200) break;
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    return t[t.size() / 2];
}

struct Data {
    std::vector<float> x, y;
};

// The implementations of one shape, for tokens and threads set at run time.
class Suite {
public:
    Suite(const Shape &s, const std::vector<float> &w, int64_t max_tokens) : s_(s), max_tokens_(max_tokens) {
        q4k_ = quantize_q4k(w.data(), s.out, s.in).data;
        i4_ = quantize_int4g(w.data(), s.out, s.in, 32, false);
        q4_0_ = int4_to_ggml_blocks(i4_, s.out, s.in);
        z4_ = quantize_int4z(w.data(), s.out, s.in, 32);
        q4_1_ = int4_to_ggml_blocks(z4_, s.out, s.in);
        q8_0_ = quantize_q8_0(w, s.out, s.in);
        const ChannelQuantized i8 = quantize_channels(Format::int8, w.data(), s.out, s.in);
        int8_ = channel_rows(Format::int8, i8.codes.data(), i8.scales.data(), s.out, s.in);
        q6k_ = quantize_q6k(w, s.out, s.in);
        iq4xs_ = random_iq4_xs(s.out, s.in);
        dense_.resize(s.out * s.in);
        ref::q4k_dequant(q4k_.data(), s.out, s.in, dense_.data());
        std::mt19937 g(11);
        std::normal_distribution<float> n(0, 1);
        d_.x.resize(max_tokens * s.in);
        for (auto &v : d_.x) v = n(g);
        d_.y.resize(max_tokens * s.out);
        add_qforge("qforge", "q4_k", Format::q4_k, q4k_);  // packed, Q8_K activations (the layer's default here)
        add_qforge("qforge", "q4_k", Format::q4_k, q4k_, Activations::f32, "-f32");  // the exact path
        // What main ran before packed layouts: f32 decode, Q8_K over the file's layout for batches.
        add_qforge("qforge", "q4_k", Format::q4_k, q4k_, Activations::automatic, "-before");
        add_qforge("qforge-int4g", "q4_0", Format::int4g, i4_.weight);
        add_qforge("qforge", "q4_0", Format::q4_0, q4_0_);
        add_qforge("qforge-int4z", "q4_1", Format::int4z, z4_.weight);
        add_qforge("qforge", "q8_0", Format::q8_0, q8_0_);
        add_qforge("qforge-int8", "q8_0", Format::int8, int8_);  // per channel (issue 19): against ggml's Q8_0
        add_qforge("qforge", "q6_k", Format::q6_k, q6k_);
        add_qforge("qforge", "iq4_xs", Format::iq4_xs, iq4xs_);
        for (bool repack : {false, true}) {
            add_ggml("q4_k", GGMLType::q4_k, q4k_, repack);
            add_ggml("q4_0", GGMLType::q4_0, q4_0_, repack);
            if (!repack) add_ggml("q4_1", GGMLType::q4_1, q4_1_, false);  // ggml has no Q4_1 repacking
        }
        add_ggml("q8_0", GGMLType::q8_0, q8_0_, false);  // ggml 0.3.16 has no Q8_0 repacking
        add_ggml("q6_k", GGMLType::q6_k, q6k_, false);  // nor Q6_K
        add_ggml("iq4_xs", GGMLType::iq4_xs, iq4xs_, false);  // nor IQ4_XS
    }

    // The implementations for `tokens` tokens on `threads` threads.
    std::vector<Impl> impls(int64_t tokens, int threads, bool with_reference) {
        tokens_ = tokens;
        set_num_threads(threads);
        openblas_set_num_threads(threads);
        for (auto &p : ggml_) p->set_threads(threads);
        std::vector<Impl> out = impls_;
        // Eager: dequantized once (not timed), a dense GEMM per call.
        out.push_back({"eager-f32-openblas", "q4_k", 1, [this](int) {
                           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens_, s_.out, s_.in, 1.0f,
                                       d_.x.data(), s_.in, dense_.data(), s_.in, 0.0f, d_.y.data(), s_.out);
                       }});
        if (with_reference) {
            out.push_back({"reference-scalar", "q4_k", 1, [this](int) {
                               std::vector<double> y(tokens_ * s_.out);
                               ref::q4k_matmul_f32(q4k_.data(), s_.out, s_.in, d_.x.data(), tokens_, nullptr, y.data());
                           }});
        }
        return out;
    }

    int64_t weight_bytes(const std::string &family) const {
        if (family == "q4_k") return static_cast<int64_t>(q4k_.size());
        if (family == "q4_0") return static_cast<int64_t>(q4_0_.size());
        if (family == "q4_1") return static_cast<int64_t>(q4_1_.size());
        if (family == "q6_k") return static_cast<int64_t>(q6k_.size());
        if (family == "iq4_xs") return static_cast<int64_t>(iq4xs_.size());
        return static_cast<int64_t>(q8_0_.size());
    }

private:
    void add_qforge(const std::string &name, const std::string &family, Format type, const std::vector<uint8_t> &bytes,
                    Activations act = Activations::automatic, const std::string &suffix = "") {
        const int copies = copies_for(static_cast<int64_t>(bytes.size()));
        auto layers = std::make_shared<std::vector<std::unique_ptr<Linear>>>();
        auto store = std::make_shared<std::vector<std::vector<uint8_t>>>(copies, bytes);
        // int4g and int4z keep their scales (and zero points) beside the nibbles: one copy per weight copy.
        const Int4gQuantized &q = type == Format::int4z ? z4_ : i4_;
        const bool planes = traits(type).separate_scales;
        auto scales = std::make_shared<std::vector<std::vector<uint16_t>>>(planes ? copies : 0, q.scales);
        auto zeros = std::make_shared<std::vector<std::vector<uint8_t>>>(type == Format::int4z ? copies : 0, q.zeros);
        for (int c = 0; c < copies; ++c) {
            WeightRef r;
            r.format = type;
            r.out = s_.out;
            r.in = s_.in;
            r.data = (*store)[c].data();
            if (planes) {
                r.scales = (*scales)[c].data();
                r.group_size = 32;
            }
            if (type == Format::int4z) r.zeros = (*zeros)[c].data();
            layers->push_back(make_linear(name + "." + family, r));
        }
        ForwardOptions fo;
        fo.activations = act;
        const bool before = suffix == "-before";
        const std::string id = traits(type).row_head_bytes ? name : name + "-" + (planes ? std::string("g32") : family);
        impls_.push_back({id + suffix,
                          family, copies, [this, layers, store, scales, zeros, fo, before](int c) {
                              ForwardOptions o = fo;
                              if (before) {
                                  o.activations = tokens_ == 1 ? Activations::f32 : Activations::q8;
                                  if (tokens_ > 1) o.run.kernel = "q4k_matmul_q8";  // the file's layout
                              }
                              (*layers)[c]->forward(ConstMatrix{d_.x.data(), tokens_, s_.in},
                                                    Matrix{d_.y.data(), tokens_, s_.out}, o);
                          }});
    }

    void add_ggml(const std::string &family, GGMLType type, const std::vector<uint8_t> &bytes, bool repack) {
        // ggml keeps one output tensor per copy's graph: cap those at 256 MiB.
        const int64_t y_bytes = max_tokens_ * s_.out * 4;
        const int copies = static_cast<int>(std::min<int64_t>(copies_for(static_cast<int64_t>(bytes.size())),
                                                              std::max<int64_t>(1, (int64_t{256} << 20) / y_bytes)));
        auto peer = std::make_shared<GGMLMatmul>(type, bytes.data(), s_.out, s_.in, copies, repack);
        ggml_.push_back(peer);
        impls_.push_back({std::string("ggml-") + family + (repack ? "-repack" : ""), family, copies, [this, peer](int c) {
                              peer->run(c, d_.x.data(), tokens_, d_.y.data());
                          }});
    }

    Shape s_;
    int64_t max_tokens_;
    std::vector<uint8_t> q4k_, q4_0_, q4_1_, q8_0_, q6k_, iq4xs_, int8_;
    Int4gQuantized i4_, z4_;
    std::vector<float> dense_;
    Data d_;
    int64_t tokens_ = 1;
    std::vector<Impl> impls_;
    std::vector<std::shared_ptr<GGMLMatmul>> ggml_;
};

}  // namespace

int main(int argc, char **argv) {
    bool quick = false;
    int64_t only_tokens = 0;  // --tokens N: just that token count
    int rounds = 3;
    const char *only = nullptr;
    std::vector<std::string> exact;  // --impl NAME,NAME: just those implementations
    const char *only_shape = nullptr;  // --shape PART: shapes whose "model layer" contains it
    bool matched = false;  // some implementation ran
    int only_threads = 0;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--quick")) quick = true;
        if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
        if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        if (!std::strcmp(argv[i], "--impl") && i + 1 < argc) {
            std::stringstream list(argv[++i]);
            for (std::string name; std::getline(list, name, ',');) exact.push_back(name);
        }
        if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) only_shape = argv[++i];
        if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) only_tokens = std::atoll(argv[++i]);
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) only_threads = std::atoi(argv[++i]);
    }
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const std::vector<int> thread_counts = only_threads > 0 ? std::vector<int>{only_threads} : std::vector<int>{1, cores};
    set_num_threads(thread_counts.front());
    auto probe = [&] {
        for (int threads : thread_counts) {
        const Roofline r = measure_roofline(threads);
        std::printf("%s\n", json{{"roofline", true}, {"threads", threads}, {"read_gbs", r.read_gbs},
                                 {"fma_gflops", r.fma_gflops}, {"int8_gops", r.int8_gops},
                                 {"ggml", ggml_version_string()}, {"cpu", cpu_name()}}
                                .dump()
                                .c_str());
        std::fflush(stdout);
        }
    };
    probe();  // again at the end: the report keeps the better of the two (this machine is shared)
    // One shape per model and projection kind, as in FORMATS.md; the largest
    // (ffn) shapes stop at 32 tokens so that the run stays within minutes.
    std::vector<std::pair<Shape, std::vector<int64_t>>> plan = {
        {{"llama-3.1-8b", "q", 4096, 4096}, {1, 8, 32, 128, 512}},
        {{"llama-3.1-8b", "gate", 14336, 4096}, {1, 8, 32}},
        {{"llama-3.2-1b", "gate", 8192, 2048}, {1, 8, 32, 128}},
        {{"qwen3-0.6b", "q", 2048, 1024}, {1, 8, 32, 128, 512}},
    };
    if (quick) plan = {{{"qwen3-0.6b", "q", 2048, 1024}, {1, 8, 128}}};
    if (only_tokens > 0) {
        for (auto &p : plan) p.second = {only_tokens};
    }
    if (only_shape) {
        std::string names;
        for (const auto &p : plan) names += std::string(names.empty() ? "" : ", ") + p.first.model + " " + p.first.layer;
        plan.erase(std::remove_if(plan.begin(), plan.end(),
                                  [&](const auto &p) {
                                      const std::string name = std::string(p.first.model) + " " + p.first.layer;
                                      return name.find(only_shape) == std::string::npos;
                                  }),
                   plan.end());
        if (plan.empty()) {
            std::fprintf(stderr,
                         "qforge_compare: --shape '%s' matches no shape (a part of \"model layer\": %s)\n", only_shape,
                         names.c_str());
            return 2;
        }
    }
    for (auto &[shape, token_list] : plan) {
        std::mt19937 g(static_cast<unsigned>(shape.out * 31 + shape.in));
        std::normal_distribution<float> n(0, 0.02f);
        std::vector<float> w(shape.out * shape.in);
        for (auto &v : w) v = n(g);
        Suite suite(shape, w, *std::max_element(token_list.begin(), token_list.end()));
        for (int64_t tokens : token_list) {
            for (int threads : thread_counts) {
                const bool with_ref = tokens == 1 && threads == 1 && shape.out * shape.in <= 4096 * 4096;
                auto impls = suite.impls(tokens, threads, with_ref);
                if (only) {  // --only SUBSTRING: just the implementations whose names contain it
                    impls.erase(std::remove_if(impls.begin(), impls.end(),
                                               [&](const Impl &i) { return i.name.find(only) == std::string::npos; }),
                                impls.end());
                }
                if (!exact.empty()) {
                    impls.erase(std::remove_if(impls.begin(), impls.end(),
                                               [&](const Impl &i) {
                                                   return std::find(exact.begin(), exact.end(), i.name) == exact.end();
                                               }),
                                impls.end());
                }
                if (impls.empty()) continue;  // (rotating an empty list would divide by zero)
                matched = true;
                for (int round = 0; round < rounds; ++round) {
                    // Rotate the order each round so that no implementation always runs first.
                    std::rotate(impls.begin(), impls.begin() + (round % impls.size()), impls.end());
                    for (const Impl &impl : impls) {
                        const bool slow = impl.name == "reference-scalar";
                        const double s = time_impl(impl, slow ? 0.0 : 0.12, slow ? 1 : 3);
                        std::printf("%s\n", json{{"impl", impl.name}, {"family", impl.family}, {"model", shape.model},
                                                 {"layer", shape.layer}, {"out", shape.out}, {"in", shape.in},
                                                 {"tokens", tokens}, {"threads", threads}, {"round", round},
                                                 {"ms", s * 1e3}, {"weight_bytes", suite.weight_bytes(impl.family)},
                                                 {"copies", impl.copies}}
                                                .dump()
                                                .c_str());
                        std::fflush(stdout);
                    }
                }
            }
        }
    }
    if (!matched) {
        std::fprintf(stderr,
                     "qforge_compare: --only '%s' and --impl match no implementation (--only: a part of a name, q4_k or "
                     "ggml-q4_0; --impl: whole names, qforge-q4_k,ggml-q4_k)\n",
                     only ? only : "");
        return 2;
    }
    probe();
    return 0;
}
