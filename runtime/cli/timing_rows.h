// Shared by demo and bench: time one layer at one token count and describe
// the result against this machine's roofline.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qforge/layers.h"
#include "qforge/roofline.h"
#include "table.h"

namespace qforge::cli {

struct LayerTiming {
    double ms = 0, gbs = 0, gflops = 0;
    double roof_fraction = 0;    // of read bandwidth (decode), or the int8 dot or f32 FMA peak (prefill)
    std::string roof;            // "BW", "int8" or "FMA"
};

// The arithmetic peak `l`'s batches run against, in G ops/s (a multiply-add
// is 2): the int8 dot peak where its default forward quantizes activations
// to 8 bits (a fused CPU layer of a format with 8-bit kernels, on a machine
// where the probe measured one), else the f32 FMA peak. `name` says which.
double batch_peak(const Linear &l, const Roofline &roof, std::string *name = nullptr);

// Random x [tokens, in] in [-1, 1].
std::vector<float> random_input(int64_t tokens, int64_t in, uint64_t seed);

// `ms` per call of `l` at `tokens` tokens, against the roofline.
LayerTiming describe_timing(const Linear &l, int64_t tokens, double ms, const Roofline &roof);

// Calls rotate over `copies` (the same layer loaded more than once), so
// that each call streams its weights from memory rather than from the cache
// its previous call warmed; the timing describes copies.front().
LayerTiming time_layer(const std::vector<std::unique_ptr<Linear>> &copies, const std::vector<float> &x, int64_t tokens,
                       const Roofline &roof, double budget_s);

}  // namespace qforge::cli
