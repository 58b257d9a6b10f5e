// A residual kept aside for an epilogue run as a pass after a matmul: it
// may be y itself, which the matmul overwrites first.
#pragma once

#include <algorithm>
#include <vector>

#include "qforge/kernels.h"

namespace qforge::internal {

class SavedResidual {
public:
    // A dense copy of r's rows (nothing when r.data is null).
    explicit SavedResidual(const ConstMatrix &r) : cols_(r.cols) {
        if (!r.data) return;
        const int64_t stride = r.stride ? r.stride : r.cols;
        values_.resize(r.rows * r.cols);
        for (int64_t t = 0; t < r.rows; ++t) std::copy_n(r.data + t * stride, r.cols, values_.data() + t * r.cols);
    }
    // y += the saved rows (host memory).
    void add_to(const Matrix &y) const {
        if (values_.empty()) return;
        const int64_t stride = y.stride ? y.stride : y.cols;
        for (int64_t t = 0; t < y.rows; ++t) {
            for (int64_t o = 0; o < y.cols; ++o) y.data[t * stride + o] += values_[t * cols_ + o];
        }
    }

private:
    int64_t cols_;
    std::vector<float> values_;
};

}  // namespace qforge::internal
