// Layers called from several threads at once, including the first calls
// (which build lazy state: the f32 path of a packed-only layer unpacks once)
// and with set_num_threads changing underneath. The test command also runs
// these under ThreadSanitizer (tests/sanitizers.cmake).
#include "layer_util.h"

#include "qforge/pack.h"

#include <atomic>
#include <thread>

namespace qforge::test {
namespace {

// Runs `body(thread_index)` on `n` threads released together.
template <typename F>
void run_together(int n, F body) {
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < n; ++t) {
        pool.emplace_back([&, t] {
            ++ready;
            while (ready.load() < n) std::this_thread::yield();
            body(t);
        });
    }
    for (auto &t : pool) t.join();
}

// Large enough (1.1 MB of Q4_K) that decode splits it across the pool.
constexpr int64_t kOut = 512, kIn = 4096;

TEST(Concurrency, FirstCallsOfAPackedOnlyLayer) {
    const int R = preferred_pack_rows(Format::q4_k);
    if (R == 0) GTEST_SKIP() << "no packed Q4_K kernel on this CPU";
    const auto w = weights(kOut, kIn);
    const BlockQuantized q = quantize_q4k(w.data(), kOut, kIn);
    std::vector<uint8_t> packed(packed_bytes(Format::q4_k, kOut, kIn, R));
    pack_weights(Weights{Format::q4_k, q.data.data(), kOut, kIn}, R, packed.data());
    auto make = [&] {
        WeightRef r;
        r.format = Format::q4_k;
        r.data = packed.data();
        r.out = kOut;
        r.in = kIn;
        r.pack_rows = R;
        return make_linear("packed", r);
    };
    const auto x = random_floats(3 * kIn);
    ForwardOptions f32;
    f32.activations = Activations::f32;
    std::vector<float> want_f32(3 * kOut), want_q8(kOut);
    {
        const auto once = make();
        once->forward(ConstMatrix{x.data(), 3, kIn}, Matrix{want_f32.data(), 3, kOut}, f32);
        once->forward(ConstMatrix{x.data(), 1, kIn}, Matrix{want_q8.data(), 1, kOut});
    }
    for (int round = 0; round < 3; ++round) {
        const auto layer = make();  // fresh: its lazy state is built by the racing calls
        std::vector<std::vector<float>> ys(4);
        run_together(4, [&](int t) {
            const bool exact = t % 2 == 0;
            ys[t].assign(exact ? 3 * kOut : kOut, nan_poison());
            layer->forward(ConstMatrix{x.data(), exact ? 3 : 1, kIn}, Matrix{ys[t].data(), exact ? 3 : 1, kOut},
                           exact ? f32 : ForwardOptions{});
        });
        for (int t = 0; t < 4; ++t) EXPECT_EQ(ys[t], t % 2 == 0 ? want_f32 : want_q8) << "thread " << t;
    }
}

TEST(Concurrency, SetNumThreadsWhileCalling) {
    const auto w = weights(kOut, kIn);
    Built b = build(Format::q4_k, w, kOut, kIn, nullptr);
    const auto x = random_floats(2 * kIn);
    std::vector<float> want1(kOut), want2(2 * kOut);
    b.layer->forward(ConstMatrix{x.data(), 1, kIn}, Matrix{want1.data(), 1, kOut});
    b.layer->forward(ConstMatrix{x.data(), 2, kIn}, Matrix{want2.data(), 2, kOut});
    const int before = set_num_threads(0);
    std::atomic<bool> done{false};
    std::vector<std::vector<float>> ys(3);
    run_together(4, [&](int t) {
        if (t == 3) {
            for (int k = 0; !done.load(); ++k) set_num_threads(1 + k % 2);
            return;
        }
        const int tokens = 1 + t % 2;
        ys[t].resize(tokens * kOut);
        for (int k = 0; k < 10; ++k) {
            std::fill(ys[t].begin(), ys[t].end(), nan_poison());
            b.layer->forward(ConstMatrix{x.data(), tokens, kIn}, Matrix{ys[t].data(), tokens, kOut});
            EXPECT_EQ(ys[t], tokens == 1 ? want1 : want2) << "thread " << t << " call " << k;
        }
        if (t == 0) done = true;
    });
    set_num_threads(before);
}

TEST(Concurrency, LayersBuiltWhileOthersRun) {
    const auto w = weights(kOut, kIn);
    const BlockQuantized q = quantize_q4k(w.data(), kOut, kIn);
    WeightRef r;
    r.format = Format::q4_k;
    r.data = q.data.data();
    r.out = kOut;
    r.in = kIn;
    const auto x = random_floats(kIn);
    std::vector<float> want(kOut);
    make_linear("a", r)->forward(ConstMatrix{x.data(), 1, kIn}, Matrix{want.data(), 1, kOut});
    run_together(3, [&](int t) {
        for (int k = 0; k < 3; ++k) {
            const auto layer = make_linear("t" + std::to_string(t), r);  // packs at load, on the pool
            std::vector<float> y(kOut, nan_poison());
            layer->forward(ConstMatrix{x.data(), 1, kIn}, Matrix{y.data(), 1, kOut});
            EXPECT_EQ(y, want) << "thread " << t;
        }
    });
}

}  // namespace
}  // namespace qforge::test
