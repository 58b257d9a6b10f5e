// The registry: every kernel is built for every target and as "auto", and
// dispatch picks a target this CPU can run.
#include "test_util.h"

#include <set>

namespace qforge::test {
namespace {

TEST(Registry, EveryKernelOnEveryTarget) {
    const auto names = kernels();
    EXPECT_GE(names.size(), 15u);
    for (const auto &k : names) {
        std::set<std::string> have;
        for (const auto &v : internal::variants()) {
            if (k == v.kernel) have.insert(v.target);
        }
        EXPECT_TRUE(have.count("auto")) << k;
        for (const auto &t : targets()) EXPECT_TRUE(have.count(t.name)) << k << " lacks " << t.name;
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

}  // namespace
}  // namespace qforge::test
