// The variant and target tables, generated from targets/ (qforge_*.inc).
#include "registry.h"

#include "qforge/kernels.h"
#include "cuda_device.h"
#include "qforge_kernel_headers.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <unordered_map>

namespace qforge::internal {

const std::vector<Variant> &variants() {
    static const std::vector<Variant> table = {
#define QF_VARIANT(kernel, target, fn) {kernel, target, reinterpret_cast<AnyFn>(&fn)},
#include "qforge_variants.inc"
#undef QF_VARIANT
    };
    return table;
}

const std::vector<TargetRow> &target_rows() {
    static const std::vector<TargetRow> table = {
#define QF_TARGET(name, family, halide_target, features) {name, family, halide_target, features},
#include "qforge_targets.inc"
#undef QF_TARGET
    };
    return table;
}

// What the machine lacks of a target's features. The machine does not change
// while the process runs, so each target is checked once: every kernel call
// asks, and parsing the lists each time cost microseconds a call.
static const std::vector<std::string> &missing_features(const TargetRow &t) {
    static const std::vector<std::vector<std::string>> all = [] {
        std::vector<std::vector<std::string>> m;
        for (const TargetRow &row : target_rows()) {
            std::vector<std::string> missing;
            std::istringstream in(row.features);
            for (std::string f; in >> f;) {
                if (!machine_has(f)) missing.push_back(f);
            }
            m.push_back(std::move(missing));
        }
        return m;
    }();
    return all[&t - target_rows().data()];
}

static const TargetRow *find_target(const std::string &name) {
    for (const TargetRow &t : target_rows()) {
        if (name == t.name) return &t;
    }
    return nullptr;
}

bool is_cuda_target(const std::string &target) {
    const TargetRow *t = find_target(target);
    return t && std::string(t->family) == "cuda";
}

const Variant &find_variant(const std::string &kernel, const std::string &requested, bool cuda) {
    std::string target = requested;
    if (cuda && target == "auto") target = dispatched_cuda_target();
    if (target != "auto" && is_cuda_target(target) != cuda) {
        throw Error("target '" + target + "' runs on " + (cuda ? "host" : "CUDA") + " memory, but the call passes " +
                    (cuda ? "CUDA" : "host") + " memory (RunOptions::memory)");
    }
    if (target != "auto") {
        const TargetRow *t = find_target(target);
        if (!t) {
            std::string known = "auto";
            for (const TargetRow &r : target_rows()) known += std::string(", ") + r.name;
            throw Error("unknown target '" + target + "' (built: " + known + ")");
        }
        const auto &missing = missing_features(*t);
        if (!missing.empty()) {
            std::string m;
            for (auto &f : missing) m += " " + f;
            throw Error("target '" + target + "' cannot run on this CPU (missing:" + m + ")");
        }
    }
    // An index, not a scan of the table's thousand rows on every call.
    static const std::unordered_map<std::string, const Variant *> index = [] {
        std::unordered_map<std::string, const Variant *> m;
        for (const Variant &v : variants()) m.emplace(std::string(v.kernel) + '@' + v.target, &v);
        return m;
    }();
    const auto it = index.find(kernel + '@' + target);
    if (it != index.end()) return *it->second;
    throw Error("kernel '" + kernel + "' is not built for target '" + target + "'");
}

std::vector<const Variant *> runnable_variants(const std::string &kernel) {
    std::vector<const Variant *> out;
    for (const Variant &v : variants()) {
        if (kernel != v.kernel) continue;
        if (std::string(v.target) == "auto" || missing_features(*find_target(v.target)).empty()) {
            out.push_back(&v);
        }
    }
    return out;
}

}  // namespace qforge::internal

namespace qforge {

std::vector<TargetInfo> targets() {
    std::vector<TargetInfo> out;
    for (const auto &t : internal::target_rows()) {
        out.push_back({t.name, t.halide_target, internal::missing_features(t)});
    }
    return out;
}

bool cpu_can_run(const std::string &target) {
    if (target == "auto") return true;
    const internal::TargetRow *t = internal::find_target(target);
    return t && internal::missing_features(*t).empty();
}

std::string dispatched_target() {
    // The multitarget library tries targets in table order and takes the first
    // this CPU supports, the last one being the unconditional fallback.
    const auto &rows = internal::target_rows();
    for (const auto &t : rows) {
        if (internal::missing_features(t).empty()) return t.name;
    }
    return rows.empty() ? "none" : rows.back().name;
}

std::string dispatched_cuda_target() {
    const internal::CudaDevice &d = internal::cuda_device();
    if (!d.present) throw Error("no CUDA device: " + d.why_absent);
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.family) == "cuda" && internal::missing_features(t).empty()) return t.name;
    }
    throw Error("no built CUDA target runs on " + d.name + " (compute capability " + std::to_string(d.major) + "." +
                std::to_string(d.minor) + ")");
}

std::vector<std::string> kernels() {
    std::vector<std::string> out;
    for (const auto &v : internal::variants()) {
        if (std::strchr(v.kernel, '@')) continue;   // a schedule variant (QF_TUNING), not a kernel of its own
        if (std::find(out.begin(), out.end(), v.kernel) == out.end()) out.push_back(v.kernel);
    }
    return out;
}

}  // namespace qforge
