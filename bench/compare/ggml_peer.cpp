#include "ggml_peer.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#include <cstring>
#include <stdexcept>
#include <vector>

struct GGMLMatmul::State {
    ggml_backend_t backend = nullptr;
    ggml_context *wctx = nullptr, *gctx = nullptr;
    ggml_backend_buffer_t wbuf = nullptr, gbuf = nullptr;
    std::vector<ggml_tensor *> w;
    std::vector<ggml_cgraph *> graphs;
    ggml_tensor *x = nullptr;
    int64_t out = 0, in = 0, tokens = 0;

    void free_graphs() {
        if (gbuf) ggml_backend_buffer_free(gbuf);
        if (gctx) ggml_free(gctx);
        gbuf = nullptr;
        gctx = nullptr;
        graphs.clear();
    }
};

namespace {

ggml_type to_ggml(GGMLType t) {
    switch (t) {
    case GGMLType::q4_k: return GGML_TYPE_Q4_K;
    case GGMLType::q6_k: return GGML_TYPE_Q6_K;
    case GGMLType::q4_0: return GGML_TYPE_Q4_0;
    case GGMLType::q4_1: return GGML_TYPE_Q4_1;
    case GGMLType::q8_0: return GGML_TYPE_Q8_0;
    case GGMLType::iq4_xs: return GGML_TYPE_IQ4_XS;
    }
    return GGML_TYPE_F32;
}

// The CPU backend's repacking buffer type, as llama.cpp finds it.
ggml_backend_buffer_type_t repack_buffer_type() {
    ggml_backend_reg_t reg = ggml_backend_cpu_reg();
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
    auto get_extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (get_extra) {
        for (ggml_backend_buffer_type_t *b = get_extra(dev); b && *b; ++b) {
            if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
        }
    }
    throw std::runtime_error("ggml: no CPU_REPACK buffer type in this build");
}

}  // namespace

GGMLMatmul::GGMLMatmul(GGMLType type, const uint8_t *bytes, int64_t out, int64_t in, int copies, bool repack)
    : s_(std::make_unique<State>()) {
    s_->out = out;
    s_->in = in;
    s_->backend = ggml_backend_cpu_init();
    ggml_init_params p{static_cast<size_t>(copies + 1) * ggml_tensor_overhead(), nullptr, true};
    s_->wctx = ggml_init(p);
    for (int c = 0; c < copies; ++c) s_->w.push_back(ggml_new_tensor_2d(s_->wctx, to_ggml(type), in, out));
    s_->wbuf = ggml_backend_alloc_ctx_tensors_from_buft(
        s_->wctx, repack ? repack_buffer_type() : ggml_backend_cpu_buffer_type());
    for (ggml_tensor *t : s_->w) ggml_backend_tensor_set(t, bytes, 0, ggml_nbytes(t));  // repacks in CPU_REPACK
}

GGMLMatmul::~GGMLMatmul() {
    s_->free_graphs();
    ggml_backend_buffer_free(s_->wbuf);
    ggml_free(s_->wctx);
    ggml_backend_free(s_->backend);
}

void GGMLMatmul::set_threads(int threads) { ggml_backend_cpu_set_n_threads(s_->backend, threads); }

void GGMLMatmul::run(int copy, const float *x, int64_t tokens, float *) {
    State &s = *s_;
    if (tokens != s.tokens) {
        s.free_graphs();
        const size_t n = s.w.size();
        ggml_init_params p{(2 * n + 2) * ggml_tensor_overhead() + n * ggml_graph_overhead(), nullptr, true};
        s.gctx = ggml_init(p);
        s.x = ggml_new_tensor_2d(s.gctx, GGML_TYPE_F32, s.in, tokens);
        for (ggml_tensor *w : s.w) {
            ggml_cgraph *g = ggml_new_graph(s.gctx);
            ggml_build_forward_expand(g, ggml_mul_mat(s.gctx, w, s.x));
            s.graphs.push_back(g);
        }
        s.gbuf = ggml_backend_alloc_ctx_tensors(s.gctx, s.backend);
        ggml_backend_tensor_set(s.x, x, 0, ggml_nbytes(s.x));
        s.tokens = tokens;
    }
    if (ggml_backend_graph_compute(s.backend, s.graphs[copy]) != GGML_STATUS_SUCCESS) {
        throw std::runtime_error("ggml: graph compute failed");
    }
}

std::string ggml_version_string() { return std::string(ggml_version()) + " (" + ggml_commit() + ")"; }
