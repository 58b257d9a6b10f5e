// The kernel, variant and target tables, generated from targets/
// (qforge_kernel_table.inc, qforge_targets.inc).
#include "registry.h"

#include "qforge/kernels.h"
#include "cuda_device.h"
#include "qforge_kernel_headers.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>

namespace qforge::internal {

namespace {

// The rows as a constant array, so that each variant's signature is a
// constant of its row.
constexpr KernelRow kRows[] = {
#define QF_ROW(id, ...) KernelRow{__VA_ARGS__},
#define QF_VARIANT(id, target, fn, asm_path, shape_class)
#include "qforge_kernel_table.inc"
#undef QF_ROW
#undef QF_VARIANT
};

// Only a function of exactly the row's signature converts: a generated
// header that disagrees with the row is a compile error here.
template <Sig S>
AnyFn typed(SigFn<S> fn) {
    return reinterpret_cast<AnyFn>(fn);
}

}  // namespace

const std::vector<KernelRow> &kernel_rows() {
    static const std::vector<KernelRow> rows(std::begin(kRows), std::end(kRows));
    return rows;
}

const std::vector<Variant> &variants() {
    static const std::vector<Variant> table = {
#define QF_ROW(...)
#define QF_VARIANT(id, target, fn, asm_path, shape_class) \
    {&kernel_rows()[id], target, signature_of(kRows[id]), typed<signature_of(kRows[id])>(&fn), asm_path, #fn, shape_class},
#include "qforge_kernel_table.inc"
#undef QF_ROW
#undef QF_VARIANT
    };
    return table;
}

const std::vector<TargetRow> &target_rows() {
    static const std::vector<TargetRow> table = {
#define QF_TARGET(name, family, halide_target, features, built, dot) {name, family, halide_target, features, built, dot},
#define QF_SHAPE_CLASS(name, from, below, in_below, threads_below)
#include "qforge_targets.inc"
#undef QF_TARGET
#undef QF_SHAPE_CLASS
    };
    return table;
}

const std::vector<ShapeClass> &shape_classes() {
    static const std::vector<ShapeClass> table = {
#define QF_TARGET(...)
#define QF_SHAPE_CLASS(name, from, below, in_below, threads_below) {name, from, below, in_below, threads_below},
#include "qforge_targets.inc"
#undef QF_TARGET
#undef QF_SHAPE_CLASS
    };
    return table;
}

bool ShapeClass::refines() const {
    return in_below != std::numeric_limits<int64_t>::max() || threads_below != std::numeric_limits<int>::max();
}

bool ShapeClass::holds(int64_t in, int threads) const {
    return (in_below == std::numeric_limits<int64_t>::max() || (in > 0 && in < in_below)) &&
           (threads_below == std::numeric_limits<int>::max() || (threads > 0 && threads < threads_below));
}

const Variant &for_shape(const Variant &v, int64_t weights, int64_t in, int threads, const std::string &forced) {
    // Each (row, target)'s class variants, found once.
    static const std::map<std::pair<const KernelRow *, std::string>, std::vector<const Variant *>> index = [] {
        std::map<std::pair<const KernelRow *, std::string>, std::vector<const Variant *>> m;
        for (const Variant &c : variants()) {
            if (*c.shape_class) m[{c.row, c.target}].push_back(&c);
        }
        return m;
    }();
    if (forced.empty() && (weights <= 0 || index.empty())) return v;  // most builds have no class variants
    const auto it = index.find({v.row, v.target});
    const auto variant_of = [&](const std::string &cls) -> const Variant * {
        if (it == index.end()) return nullptr;
        for (const Variant *c : it->second) {
            if (cls == c->shape_class) return c;
        }
        return nullptr;
    };
    std::string cls = forced;
    if (cls.empty()) {
        // The refining classes' variants first, in knobs.json's order, then
        // the class of the size.
        for (const bool refining : {true, false}) {
            for (const ShapeClass &c : shape_classes()) {
                if (c.refines() != refining || weights < c.from || weights >= c.below) continue;
                if (refining && !c.holds(in, threads)) continue;
                if (const Variant *found = variant_of(c.name)) return *found;
                if (!refining) return v;
            }
        }
        return v;
    } else if (cls != "-" && std::none_of(shape_classes().begin(), shape_classes().end(),
                                          [&](const ShapeClass &c) { return cls == c.name; })) {
        std::string known;
        for (const ShapeClass &c : shape_classes()) known += std::string(known.empty() ? "" : ", ") + c.name;
        throw Error("unknown shape class '" + cls + "' (known: " + known + ", or - for the kernel's own)");
    }
    const Variant *found = variant_of(cls);
    return found ? *found : v;
}

std::string kernel_name(const KernelRow &r) {
    static const char *const ops[] = {"dequant", "matvec", "matmul", "quantize", "convert"};
    static const char *const outs[] = {"f32", "f16", "q8k", "q8_0"};
    const char *act = r.act == ActType::q8_k ? "q8" : r.act == ActType::q8_0 ? "q8_0" : "f32";
    std::string s;
    switch (r.op) {
    case Op::quantize: s = std::string(outs[static_cast<int>(r.out)]) + "_quantize"; break;
    case Op::convert: s = std::string(outs[static_cast<int>(r.out)]) + "_from_" + act; break;
    case Op::glu: s = std::string("glu_") + act; break;
    case Op::head_norm: s = std::string("head_norm_") + act; break;
    case Op::permute: s = std::string("permute_") + act; break;
    case Op::repack: s = std::string(traits(r.format).kernel_prefix) + "_repack_cutlass"; break;
    case Op::dequant: s = std::string(traits(r.format).kernel_prefix) + "_dequant" + (r.out == Out::f16 ? "_f16" : ""); break;
    default: s = std::string(traits(r.format).kernel_prefix) + "_" + ops[static_cast<int>(r.op)] + "_" + act;
    }
    if (r.norm) s += "_norm";
    if (r.group) s += "_g" + std::to_string(r.group);
    if (r.pack) s += "_x" + std::to_string(r.pack);
    if (r.epi == Epi::glu) s += "_glu";
    if (r.epi == Epi::head_norm) s += "_head_norm";
    if (*r.tag) s += std::string("@") + r.tag;
    return s;
}

const KernelRow *find_row(const std::string &name) {
    static const std::map<std::string, const KernelRow *> index = [] {
        std::map<std::string, const KernelRow *> m;
        for (const KernelRow &r : kernel_rows()) m.emplace(kernel_name(r), &r);
        return m;
    }();
    const auto it = index.find(name);
    return it == index.end() ? nullptr : it->second;
}

const KernelRow *find_row(const KernelKey &k) {
    for (const KernelRow &r : kernel_rows()) {
        if (*r.tag || r.weights != k.weights || r.op != k.op || r.norm != k.norm || r.out != k.out || r.group != k.group ||
            r.pack != k.pack || r.epi != k.epi) continue;
        if (r.weights && r.format != k.format) continue;
        if (r.has_act && r.act != k.act) continue;
        return &r;
    }
    return nullptr;
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

const Variant &find_variant(const KernelRow &row, const std::string &requested, bool cuda) {
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
            throw Error("unknown target '" + target + "' (known: " + known + ")");
        }
        const auto &missing = missing_features(*t);
        if (!missing.empty()) {
            std::string m;
            for (auto &f : missing) m += " " + f;
            throw Error("target '" + target + "' cannot run on this CPU (missing:" + m + ")");
        }
    }
    // An index, not a scan of the table's rows on every call.
    static const std::map<std::pair<const KernelRow *, std::string>, const Variant *> index = [] {
        std::map<std::pair<const KernelRow *, std::string>, const Variant *> m;
        for (const Variant &v : variants()) {
            if (!*v.shape_class) m.emplace(std::make_pair(v.row, std::string(v.target)), &v);
        }
        return m;
    }();
    auto it = index.find({&row, target});
    if (it == index.end() && target == "auto" && !cuda) {
        target = dispatched_target();  // every target built one by one: no multitarget library
        it = index.find({&row, target});
    }
    if (it != index.end()) return *it->second;
    const TargetRow *t = find_target(target);
    if (t && !t->built) {
        throw Error("kernel '" + kernel_name(row) + "' has no library of its own for target '" + target +
                    "' in this build (QF_VARIANTS=all builds one per target; QF_LOWER_ONLY targets are only lowered)");
    }
    throw Error("kernel '" + kernel_name(row) + "' is not built for target '" + target + "'");
}

std::string cpu_family() {
    for (const TargetRow &t : target_rows()) {
        if (std::string(t.family) != "cuda") return t.family;
    }
    return "";
}

std::vector<const Variant *> runnable_variants(const KernelRow &row) {
    std::vector<const Variant *> out;
    for (const Variant &v : variants()) {
        if (v.row != &row || *v.shape_class) continue;
        const TargetRow *t = find_target(v.target);
        if (std::string(v.target) == "auto" || (t && std::string(t->family) != "cuda" && missing_features(*t).empty())) {
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
    const internal::TargetRow *last = nullptr;
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.family) == "cuda") continue;
        if (internal::missing_features(t).empty()) return t.name;
        last = &t;
    }
    return last ? last->name : "none";
}

std::string dispatched_cuda_target() {
    const internal::CudaDevice &d = internal::cuda_device();
    bool any = false;
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.family) != "cuda") continue;
        any = true;
        if (d.present && internal::missing_features(t).empty()) return t.name;
    }
    if (!any) throw Error("this build has no CUDA variants (no CUDA toolkit at configure time; -DQF_CUDA=ON builds them)");
    if (!d.present) throw Error("no CUDA device: " + d.why_absent);
    throw Error("no built CUDA target runs on " + d.name + " (compute capability " + std::to_string(d.major) + "." +
                std::to_string(d.minor) + ")");
}

std::vector<std::string> kernels() {
    std::vector<std::string> out;
    for (const auto &r : internal::kernel_rows()) {
        if (!*r.tag) out.push_back(internal::kernel_name(r));  // tagged rows are schedule variants, not kernels
    }
    return out;
}

}  // namespace qforge
