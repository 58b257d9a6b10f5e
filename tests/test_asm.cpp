// Proves from the generated assembly that the integer-dot kernels use the
// integer dot-product instructions of each target, so that a schedule
// change that loses them fails here rather than in a benchmark.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Asm {
    const char *kernel, *target, *path;
};

const std::vector<Asm> &asm_files() {
    static const std::vector<Asm> files = {
#define QF_ASM(kernel, target, path) {kernel, target, path},
#include "qforge_asm.inc"
#undef QF_ASM
    };
    return files;
}

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

// The instructions each target's integer-dot kernels must contain (any one of).
const std::map<std::string, std::vector<std::string>> kRequired = {
    {"x86-avx512-vnni", {"vpdpbusd"}},
    {"x86-avx512", {"vpmaddubsw", "vpmaddwd"}},
    {"x86-avx2", {"vpmaddubsw", "vpmaddwd"}},
    {"x86-sse41", {"pmaddubsw", "pmaddwd"}},
    {"arm64-dotprod", {"udot", "sdot", "usdot"}},
    {"arm64-neon", {"smull", "smull2", "smlal", "smlal2", "saddlp", "sadalp"}},
};

TEST(Assembly, IntegerDotKernelsUseDotInstructions) {
    int checked = 0;
    for (const Asm &a : asm_files()) {
        const std::string kernel = a.kernel;
        if (kernel != "q4k_matvec_q8" && kernel != "q4k_matmul_q8") continue;
        std::ifstream f(a.path);
        ASSERT_TRUE(f) << "cannot read " << a.path;
        std::stringstream text;
        text << f.rdbuf();
        if (std::string(a.target).rfind("cuda-", 0) == 0) {
            // The PTX is embedded in the host assembly as one string.
            EXPECT_NE(text.str().find("dp4a.s32.s32"), std::string::npos) << kernel << " on " << a.target << " has no dp4a";
            ++checked;
            continue;
        }
        auto req = kRequired.find(a.target);
        ASSERT_NE(req, kRequired.end()) << "no instruction rule for target " << a.target;
        int found = 0;
        for (const auto &m : req->second) found += count(text.str(), m);
        EXPECT_GT(found, 0) << kernel << " on " << a.target << " has none of the expected dot-product instructions";
        ++checked;
    }
    EXPECT_GE(checked, 4);  // two integer-dot kernels on at least two targets
}

}  // namespace
