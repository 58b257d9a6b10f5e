// What other layer objects (block.cpp's FFN) need of a Linear beyond its
// public interface (internal).
#pragma once

#include <vector>

#include "qforge/layers.h"

namespace qforge::internal {

struct LayerAccess {
    // The layer's host weights in the file's layout (made once from packed
    // bytes where the layer was built from them).
    static Weights file_weights(const Linear &l);
    static const std::vector<float> &bias(const Linear &l);
    // Frees the packed copy a layer made at load, for an owner that packed
    // the same rows its own way: the layer's 8-bit calls then read the
    // file's layout. Before the layer is shared between threads.
    static void drop_packed(const Linear &l);
};

}  // namespace qforge::internal
