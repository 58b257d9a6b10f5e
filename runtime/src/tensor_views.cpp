#include "tensor_views.h"

#include <algorithm>

namespace qforge {

int64_t TensorView::elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string shape_string(const std::vector<int64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string clipped(const std::string &s) {
    if (s.size() <= 256) return s;
    return s.substr(0, 200) + "... (" + std::to_string(s.size()) + " bytes)";
}

int64_t checked_elements(const std::vector<int64_t> &shape, const std::string &where, bool allow_zero) {
    int64_t n = 1;
    bool empty = false;
    for (int64_t d : shape) {
        if (d < 0 || (d == 0 && !allow_zero)) throw Error(where + ": shape " + shape_string(shape) + " has a dimension <= 0");
        if (d == 0) {
            empty = true;  // still checked: the other dimensions must not overflow either
            continue;
        }
        if (n > INT64_MAX / d) throw Error(where + ": shape " + shape_string(shape) + " overflows");
        n *= d;
    }
    return empty ? 0 : n;
}

uint64_t checked_bytes(DType type, const std::vector<int64_t> &shape, const std::string &where, bool allow_zero) {
    const int64_t elements = shape.empty() ? 1 : checked_elements(shape, where, allow_zero);
    const BlockShape bs = block_shape(type);
    const int64_t blocks = elements / bs.elements;
    if (blocks > INT64_MAX / bs.bytes) {
        throw Error(where + ": shape " + shape_string(shape) + " of " + to_string(type) + " overflows: more than 2^63 bytes");
    }
    return static_cast<uint64_t>(blocks * bs.bytes);
}

std::vector<uint32_t> name_index(const std::vector<TensorView> &views, int64_t *duplicate) {
    std::vector<uint32_t> index(views.size());
    for (size_t i = 0; i < views.size(); ++i) index[i] = static_cast<uint32_t>(i);
    std::stable_sort(index.begin(), index.end(), [&](uint32_t a, uint32_t b) { return views[a].name < views[b].name; });
    *duplicate = -1;
    for (size_t i = 1; i < index.size(); ++i) {
        if (views[index[i - 1]].name == views[index[i]].name) {
            *duplicate = index[i];
            break;
        }
    }
    return index;
}

const TensorView *find_by_name(const std::vector<TensorView> &views, const std::vector<uint32_t> &index,
                               const std::string &name) {
    const auto it = std::lower_bound(index.begin(), index.end(), name,
                                     [&](uint32_t i, const std::string &n) { return views[i].name < n; });
    return it != index.end() && views[*it].name == name ? &views[*it] : nullptr;
}

void check_no_overlap(const std::vector<TensorView> &views, const std::string &file) {
    std::vector<const TensorView *> order;
    for (const auto &v : views) order.push_back(&v);
    std::sort(order.begin(), order.end(), [](auto *a, auto *b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i) {
        const TensorView &a = *order[i - 1], &b = *order[i];
        if (a.offset + a.bytes > b.offset) {
            throw Error(file + ": tensors '" + a.name + "' (bytes " + std::to_string(a.offset) + ".." +
                        std::to_string(a.offset + a.bytes) + ") and '" + b.name + "' (from byte " +
                        std::to_string(b.offset) + ") overlap");
        }
    }
}

}  // namespace qforge
