// The kernel table: every row is built for every target of its families
// (and "auto" runs on the CPU), every variant is a parameter of some test
// suite, dispatch picks a target this CPU can run, and the format table
// agrees with the file formats' block sizes.
#include "test_util.h"

#include "qforge/pack.h"

#include <algorithm>
#include <limits>
#include <set>
#include <sstream>

namespace qforge::test {
namespace {

bool in_families(const KernelRow &r, const std::string &family) {
    std::istringstream in(r.families);
    for (std::string f; in >> f;) {
        if (f == family) return true;
    }
    return false;
}

TEST(Registry, EveryRowOnEveryTargetOfItsFamilies) {
    EXPECT_GE(internal::kernel_rows().size(), 15u);
    for (const KernelRow &r : internal::kernel_rows()) {
        if (*r.tag) continue;  // schedule variants are built for the targets they tune
        std::set<std::string> have;
        for (const auto &v : internal::variants()) {
            if (v.row == &r) have.insert(v.target);
        }
        const std::string name = internal::kernel_name(r);
        bool cpu = false, any_cpu_target = false;
        for (const auto &t : internal::target_rows()) {
            if (!in_families(r, t.family)) continue;
            const bool is_cpu = std::string(t.family) != "cuda";
            cpu |= is_cpu;
            if (is_cpu) any_cpu_target |= t.built;
            if (t.built) EXPECT_TRUE(have.count(t.name)) << name << " lacks " << t.name;
        }
        // With the CPU targets built one by one (some only lowered, QF_LOWER_ONLY),
        // "auto" is the registry's dispatch over them.
        if (cpu && !any_cpu_target) EXPECT_TRUE(have.count("auto")) << name << " lacks auto";
        if (cpu) EXPECT_NO_THROW(internal::find_variant(r, "auto")) << name;
    }
}

// The shape classes (targets/knobs.json) cut the layer sizes into ranges
// without gaps or overlaps, so every call has exactly one; a call runs its
// class's variant where the build has one (targets.cmake's QF_CLASS_VARIANTS,
// a tuning database), else the kernel's own.
TEST(Registry, ShapeClassesPartitionLayerSizes) {
    std::vector<internal::ShapeClass> c, refining;
    for (const auto &sc : internal::shape_classes()) (sc.refines() ? refining : c).push_back(sc);
    ASSERT_FALSE(c.empty());
    std::sort(c.begin(), c.end(), [](const auto &a, const auto &b) { return a.from < b.from; });
    EXPECT_EQ(c.front().from, 0);
    for (size_t i = 0; i + 1 < c.size(); ++i) EXPECT_EQ(c[i].below, c[i + 1].from) << c[i].name;
    EXPECT_EQ(c.back().below, std::numeric_limits<int64_t>::max());
    // A refining class covers whole classes of sizes or lies inside one, so
    // that a call it refines falls back to one class's variant.
    for (const auto &r : refining) {
        const bool inside = std::any_of(c.begin(), c.end(), [&](const auto &s) { return s.from <= r.from && r.below <= s.below; });
        const bool whole = std::any_of(c.begin(), c.end(), [&](const auto &s) { return s.from == r.from; }) &&
                           std::any_of(c.begin(), c.end(), [&](const auto &s) { return s.below == r.below; });
        EXPECT_TRUE(inside || whole) << r.name;
        EXPECT_FALSE(r.holds(0, 0)) << r.name;
    }

    const KernelRow *row = internal::find_row("q4k_matvec_f32");
    ASSERT_NE(row, nullptr);
    const internal::Variant &v = internal::find_variant(*row, "auto");
    EXPECT_EQ(&internal::for_shape(v, 0, 0, 0, ""), &v);
    EXPECT_EQ(&internal::for_shape(v, 4096 * 4096, 4096, 1, "-"), &v);
    EXPECT_THROW(internal::for_shape(v, 4096 * 4096, 4096, 1, "medium"), Error);
    for (const internal::Variant &cv : internal::variants()) {
        if (!*cv.shape_class) continue;
        const internal::Variant &base = internal::find_variant(*cv.row, cv.target);
        EXPECT_EQ(*base.shape_class, 0) << base.function;
        EXPECT_EQ(&internal::for_shape(base, 0, 0, 0, cv.shape_class), &cv) << cv.function;
        for (const auto &sc : internal::shape_classes()) {
            if (std::string(sc.name) != cv.shape_class) continue;
            // A call inside the class's bounds runs its variant, unless a
            // refining class listed before it holds the call too.
            const int64_t in = sc.in_below == std::numeric_limits<int64_t>::max() ? 1 << 20 : sc.in_below - 1;
            const int threads = sc.threads_below == std::numeric_limits<int>::max() ? 64 : sc.threads_below - 1;
            const internal::Variant *expect = &cv;
            for (const auto &first : internal::shape_classes()) {
                if (&first == &sc) break;
                if (first.refines() && first.from <= sc.from && sc.from < first.below && first.holds(in, threads)) {
                    const internal::Variant &fv = internal::for_shape(base, 0, 0, 0, first.name);
                    if (*fv.shape_class) {
                        expect = &fv;
                        break;
                    }
                }
            }
            EXPECT_EQ(&internal::for_shape(base, sc.from + 1, in, threads, ""), expect) << cv.function;
        }
        // A short row on one thread: the first refining class listed that
        // holds it and has a variant (x86-zen4's 32-block decode: "short").
        const internal::Variant *first = &base;
        for (const auto &sc : internal::shape_classes()) {
            if (sc.refines() && sc.from <= 1024 * 2048 && 1024 * 2048 < sc.below && sc.holds(1024, 1)) {
                const internal::Variant &fv = internal::for_shape(base, 0, 0, 0, sc.name);
                if (*fv.shape_class) {
                    first = &fv;
                    break;
                }
            }
        }
        if (first != &base) EXPECT_EQ(&internal::for_shape(base, 1024 * 2048, 1024, 1, ""), first) << cv.function;
    }
}

// A variant no suite takes is a kernel nobody checks: adding a row without
// its tests fails here.
TEST(Registry, EveryVariantIsTested) {
    for (const internal::Variant &v : internal::variants()) {
        EXPECT_TRUE(claims().count(&v)) << internal::kernel_name(*v.row) << " on " << v.target
                                        << " is not a parameter of any test suite";
    }
}

TEST(Registry, KernelNamesAreUniqueAndFindTheirRows) {
    std::set<std::string> names;
    for (const KernelRow &r : internal::kernel_rows()) {
        const std::string name = internal::kernel_name(r);
        EXPECT_TRUE(names.insert(name).second) << "two rows are named " << name;
        EXPECT_EQ(internal::find_row(name), &r) << name;
    }
}

TEST(Registry, DispatchPicksARunnableTarget) {
    EXPECT_TRUE(cpu_can_run(dispatched_target())) << dispatched_target();
    // The last target of this build's CPU family is the unconditional fallback.
    std::string fallback;
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.family) != "cuda") fallback = t.name;
    }
    EXPECT_TRUE(cpu_can_run(fallback)) << fallback;
}

// x86-zen4 is x86-avx512-vnni for AMD's cores: the same instructions and
// features plus the vendor, listed first, so that the registry gives AMD's
// CPUs their own schedules and every other CPU the generic ones.
TEST(Registry, VendorTargetsAddOnlyTheVendor) {
    const internal::TargetRow *zen = nullptr, *vnni = nullptr;
    for (const auto &t : internal::target_rows()) {
        if (std::string(t.name) == "x86-zen4") zen = &t;
        if (std::string(t.name) == "x86-avx512-vnni") vnni = &t;
    }
    if (!zen) GTEST_SKIP() << "no x86 targets in this build";
    ASSERT_NE(vnni, nullptr);
    EXPECT_LT(zen, vnni) << "x86-zen4 must come first, or the registry never picks it";
    EXPECT_EQ(std::string(zen->features), std::string(vnni->features) + " amd");
    EXPECT_STREQ(zen->dot, vnni->dot);
    EXPECT_EQ(cpu_can_run("x86-zen4"), cpu_can_run("x86-avx512-vnni") && internal::machine_has("amd"));
    if (cpu_can_run("x86-avx512-vnni")) {
        EXPECT_EQ(dispatched_target(), internal::machine_has("amd") ? "x86-zen4" : "x86-avx512-vnni");
    }
}

TEST(Registry, CudaVariantsAreBuilt) {
    if (!cuda_built()) GTEST_SKIP() << kNoCudaBuilt;
    int n = 0;
    for (const auto &v : internal::variants()) n += internal::is_cuda_target(v.target);
    EXPECT_GT(n, 0);
}

// The format table against the file formats and the kernel table: a format
// row with the wrong block size, or activations with no kernels, fails here.
TEST(Formats, TraitsAgreeWithFilesAndKernels) {
    std::set<std::string> prefixes;
    for (const FormatTraits &t : all_formats()) {
        SCOPED_TRACE(t.name);
        EXPECT_EQ(traits(t.format).format, t.format);
        EXPECT_EQ(format_from_string(t.name), t.format);
        EXPECT_TRUE(prefixes.insert(t.kernel_prefix).second) << "kernel prefix " << t.kernel_prefix << " twice";
        if (t.in_files) {
            EXPECT_EQ(format_of(t.file_type), t.format);
            EXPECT_EQ(block_shape(t.file_type).elements, t.block_elements);
            EXPECT_EQ(block_shape(t.file_type).bytes, t.block_bytes);
        }
        EXPECT_EQ(t.separate_scales, !t.group_sizes.empty());
        for (int at : t.f16_fields) EXPECT_LE(at + 2, t.block_bytes);
        // Every activation type it lists has decode and prefill kernels, for
        // every group size, in the file's layout or (8-bit) in its packed one.
        const std::vector<int> groups = t.group_sizes.empty() ? std::vector<int>{0} : t.group_sizes;
        for (ActType act : t.activations) {
            for (int g : groups) {
                for (Op op : {Op::matvec, Op::matmul}) {
                    internal::KernelKey k;
                    k.format = t.format;
                    k.op = op;
                    k.act = act;
                    k.group = g;
                    const int R = act == ActType::f32 ? 0 : preferred_pack_rows(t.format, g);
                    const bool file = internal::find_row(k) != nullptr;
                    k.pack = R;
                    EXPECT_TRUE(file || (R && internal::find_row(k))) << "no kernel row for group " << g;
                }
            }
        }
    }
    EXPECT_THROW(format_from_string("iq2_xxs"), Error);
    EXPECT_THROW(format_of(DType::iq2_xxs), Error);
}

}  // namespace
}  // namespace qforge::test
