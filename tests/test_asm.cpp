// Proves from the generated assembly that the integer-dot kernels use the
// integer dot-product instructions of each target, so that a schedule
// change that loses them fails here rather than in a benchmark.
#include "registry.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

int count(const std::string &text, const std::string &mnemonic) {
    int n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::istringstream words(line);
        std::string first;
        if (words >> first && first == mnemonic) ++n;
    }
    return n;
}

TEST(Assembly, IntegerDotKernelsUseDotInstructions) {
    int checked = 0;
    // The build keeps the assembly of exactly the integer-dot rows (targets/CMakeLists.txt).
    for (const qforge::internal::Variant &a : qforge::internal::variants()) {
        if (!a.asm_path) continue;
        const std::string kernel = qforge::internal::kernel_name(*a.row);
        EXPECT_EQ(a.row->act, qforge::ActType::q8_k) << kernel << " keeps assembly nobody reads";
        std::ifstream f(a.asm_path);
        ASSERT_TRUE(f) << "cannot read " << a.asm_path;
        std::stringstream text;
        text << f.rdbuf();
        // The target's rule (targets.cmake): any one of these. CUDA's PTX is
        // embedded in the host assembly as one string, so search the text.
        const qforge::internal::TargetRow *target = nullptr;
        for (const auto &t : qforge::internal::target_rows()) {
            if (std::string(t.name) == a.target) target = &t;
        }
        ASSERT_NE(target, nullptr) << a.target;
        const bool cuda = std::string(target->family) == "cuda";
        int found = 0;
        std::istringstream rule(target->dot);
        for (std::string m; rule >> m;) {
            found += cuda ? text.str().find(m) != std::string::npos : count(text.str(), m);
        }
        EXPECT_GT(found, 0) << kernel << " on " << a.target << " has none of " << target->dot;
        ++checked;
    }
    // Two integer-dot kernels on every target built one by one (none where only "auto" is).
    int built = 0;
    for (const auto &t : qforge::internal::target_rows()) built += t.built;
    EXPECT_EQ(checked, 2 * built);
}

}  // namespace
