// Proves from the generated assembly that the integer-dot kernels use the
// integer dot-product instructions of each target, so that a schedule
// change that loses them fails here rather than in a benchmark.
#include "registry.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <cstdio>
#include <vector>

namespace {

// Word k of an instruction line (0: the mnemonic, 1: the first operand),
// without a stream per call: the listings are long and the ARM run is
// under qemu.
std::string word(const std::string &line, int k) {
    size_t b = line.find_first_not_of(" \t");
    for (; k > 0 && b != std::string::npos; --k) b = line.find_first_not_of(" \t", line.find_first_of(" \t", b));
    if (b == std::string::npos) return "";
    const size_t e = line.find_first_of(" \t", b);
    return line.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

std::string mnemonic(const std::string &line) { return word(line, 0); }

// A disassembly (objdump -d --no-show-raw-insn: a section header, then
// "addr:<tab>mnemonic operands" lines) as instruction lines (mnemonic
// first, objdump's trailing comments dropped), and its loops: the index
// ranges [first, last] from a branch's target up to a backward branch to
// it in the same section (x86 j*, ARM b/b.cond/cbz/cbnz/tbz/tbnz; calls
// are not loops).
struct Listing {
    std::vector<std::string> lines;
    std::vector<std::pair<size_t, size_t>> loops;
};

Listing listing(const std::string &text) {
    struct Insn {
        int section;
        unsigned long long addr;
    };
    Listing out;
    std::vector<Insn> insns;
    int section = 0;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        if (l.rfind("Disassembly of section", 0) == 0) {
            ++section;
            continue;
        }
        const size_t colon = l.find(":\t");
        if (l.empty() || !isspace(static_cast<unsigned char>(l[0])) || colon == std::string::npos) continue;
        char *end = nullptr;
        const unsigned long long addr = std::strtoull(l.c_str(), &end, 16);
        if (end != l.c_str() + colon) continue;
        std::string body = l.substr(colon + 2);
        for (const char *comment : {"//", "  #", "\t#"}) {
            const size_t c = body.find(comment);
            if (c != std::string::npos) body.erase(c);
        }
        insns.push_back({section, addr});
        out.lines.push_back("\t" + body);
    }
    for (size_t i = 0; i < insns.size(); ++i) {
        const std::string &line = out.lines[i];
        const std::string op = mnemonic(line);
        if (op.empty()) continue;
        const bool x86 = op[0] == 'j';
        const bool arm = op == "b" || op.rfind("b.", 0) == 0 || op == "cbz" || op == "cbnz" || op == "tbz" || op == "tbnz";
        if (!x86 && !arm) continue;
        // The target address is the word before "<symbol+offset>".
        const size_t lt = line.find(" <");
        if (lt == std::string::npos) continue;
        const size_t start = line.find_last_of(" \t,", lt - 1);
        char *end = nullptr;
        const std::string hex = line.substr(start + 1, lt - start - 1);
        const unsigned long long to = std::strtoull(hex.c_str(), &end, 16);
        if (hex.empty() || *end != '\0' || to > insns[i].addr) continue;
        size_t first = i;
        while (first > 0 && insns[first - 1].section == insns[i].section && insns[first - 1].addr >= to) --first;
        out.loops.emplace_back(first, i);
    }
    return out;
}

// A scalar bit-twiddling instruction: shifts, masks, ors and multiplies on
// general-purpose registers, which is what decoding packed scales in the
// loop costs. Address arithmetic (add, sub, lea), loads, moves, compares and
// branches are not counted: ARM's broadcast loads take only a base register,
// so their adds say nothing about the algorithm.
bool scalar_bit_op(const std::string &line) {
    const std::string m = mnemonic(line);
    static const char *const x86[] = {"shl", "shr", "sar", "and", "or", "xor", "imul", "movzb", "rol", "ror", "bextr", "pext"};
    static const char *const arm[] = {"and", "orr", "eor", "lsl", "lsr", "asr", "ubfx", "sbfx", "bfi", "bfxil", "mul", "madd", "msub", "ubfiz", "sbfiz"};
    if (m.empty() || m[0] == 'v') return false;  // x86 vector instructions
    const std::string first = word(line, 1);
    if (first.size() > 1 && (first[0] == 'w' || first[0] == 'x') && isdigit(static_cast<unsigned char>(first[1]))) {
        for (const char *p : arm) {
            if (m == p) return true;
        }
        return false;
    }
    if (first.empty() || first[0] == '%' || first[0] == '$' || first[0] == '(' || first[0] == '-' || isdigit(static_cast<unsigned char>(first[0]))) {
        // AT&T syntax: an x86 mnemonic with its size suffix (shll, andq, imull, movzbl).
        for (const char *p : x86) {
            if (m.rfind(p, 0) == 0 && m.size() <= std::string(p).size() + 2 && line.find("%xmm") == std::string::npos &&
                line.find("%ymm") == std::string::npos && line.find("%zmm") == std::string::npos) {
                return true;
            }
        }
    }
    return false;
}

// A vector instruction (ARM's smull also has a scalar, 64-bit form).
bool is_vector(const std::string &line) {
    const std::string first = word(line, 1);
    return line.find("mm") != std::string::npos || (first.size() > 1 && first[0] == 'v' && isdigit(static_cast<unsigned char>(first[1])));
}

int count(const std::vector<std::string> &lines, const std::string &m) {
    int n = 0;
    for (const std::string &line : lines) n += mnemonic(line) == m;
    return n;
}

TEST(Assembly, IntegerDotKernelsUseDotInstructions) {
    int checked = 0;
    // The build keeps the assembly of exactly the integer-dot rows (targets/CMakeLists.txt).
    for (const qforge::internal::Variant &a : qforge::internal::variants()) {
        if (!a.asm_path) continue;
        const std::string kernel = qforge::internal::kernel_name(*a.row);
        EXPECT_NE(a.row->act, qforge::ActType::f32) << kernel << " keeps assembly nobody reads";
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
        const Listing asm_ = cuda ? Listing{} : listing(text.str());
        int found = 0;
        std::istringstream rule(target->dot);
        for (std::string m; rule >> m;) {
            found += cuda ? text.str().find(m) != std::string::npos : count(asm_.lines, m);
        }
        EXPECT_GT(found, 0) << kernel << " on " << a.target << " has none of " << target->dot;
        ++checked;
        if (!a.row->pack) continue;
        // Packed kernels: the hottest loop (the one with the most of the
        // target's first-listed, preferred dot instruction: vpmaddubsw, not
        // only vpmaddwd, on AVX2) has it, and at most one scalar bit
        // operation per 4 dot instructions: scale decoding stays out (the
        // file-layout Q4_K kernel had 5 per vpdpbusd).
        std::string preferred;
        std::istringstream(target->dot) >> preferred;
        if (cuda) {  // one PTX string, no loops to find: the packed kernels use the preferred form
            EXPECT_NE(text.str().find(preferred), std::string::npos) << kernel << " on " << a.target << " has no " << preferred;
            continue;
        }
        // The hottest loop: the innermost (smallest) loop that has the
        // instruction; loops around it (tiles, tasks, staging) are not it.
        // Each line classified once; a loop's counts are differences of
        // running sums (the tests run under qemu too).
        std::vector<int> dots_before(1, 0), scalar_before(1, 0);
        for (const std::string &l : asm_.lines) {
            dots_before.push_back(dots_before.back() + (mnemonic(l) == preferred && is_vector(l)));
            scalar_before.push_back(scalar_before.back() + scalar_bit_op(l));
        }
        int best = 0, scalar = 0;
        size_t size = SIZE_MAX;
        for (const auto &[first, last] : asm_.loops) {
            const int dots = dots_before[last + 1] - dots_before[first];
            if (dots > 0 && last + 1 - first < size) {
                best = dots, scalar = scalar_before[last + 1] - scalar_before[first], size = last + 1 - first;
            }
        }
        EXPECT_GT(best, 0) << kernel << " on " << a.target << ": no loop has " << preferred;
        EXPECT_LE(4 * scalar, best) << kernel << " on " << a.target << ": " << scalar
                                    << " scalar bit operations beside " << best << " dot instructions in its hottest loop";
        std::printf("[ asm      ] %s on %s: hottest loop %d %s, %d scalar bit ops\n", kernel.c_str(), a.target, best,
                    preferred.c_str(), scalar);
    }
    // Every integer-dot row on every target of its families built one by one
    // (none where only "auto" is), and their variants for a tuning database's
    // shape classes (tuned knobs must not lose the dots either).
    int expected = 0;
    for (const qforge::internal::Variant &v : qforge::internal::variants()) {
        expected += *v.shape_class && v.row->has_act && v.row->act != qforge::ActType::f32 && std::string(v.target) != "auto";
    }
    for (const auto &t : qforge::internal::target_rows()) {
        if (!t.built) continue;
        for (const auto &r : qforge::internal::kernel_rows()) {
            const std::string fams = std::string(" ") + r.families + " ";
            expected += r.has_act && r.act != qforge::ActType::f32 &&
                        fams.find(std::string(" ") + t.family + " ") != std::string::npos;
        }
    }
    EXPECT_EQ(checked, expected);
}

}  // namespace
