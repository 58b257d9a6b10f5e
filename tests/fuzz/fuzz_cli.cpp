// libFuzzer harness: what the CLI does with a file it is given: open it by
// its first bytes, `inspect` it (text and JSON), list its linear layers,
// and build and run the small ones (as `qforge matmul` and `dequant` do).
// Only qforge::Error may escape.
#include "fuzz_util.h"

#include "commands.h"
#include "model.h"

#include <cstdio>

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    if (!std::freopen("/dev/null", "w", stdout)) std::abort();  // inspect prints its tables
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    using namespace qforge;
    const std::string path = fuzz::as_file(data, size);
    try {
        cli::inspect(path, {});
        cli::inspect(path, {true});
    } catch (const Error &) {
    }
    try {
        const cli::ModelFile m = cli::ModelFile::open(path);
        for (const auto &l : m.linears()) {
            if (l.out <= 0 || l.in <= 0) fuzz::violated("linear '" + l.name + "' with an empty shape");
            if (l.out * l.in > (1 << 16)) continue;  // a fuzzer's inputs are small; so is what it may run
            try {
                std::vector<int64_t> shape;
                const std::vector<float> w = m.to_f32(l.name, &shape);
                if (static_cast<int64_t>(w.size()) != l.out * l.in) fuzz::violated("to_f32('" + l.name + "') size");
                const auto layer = m.layer(l.name);
                std::vector<float> x(2 * l.in, 0.5f), y(2 * l.out);
                layer->forward(ConstMatrix{x.data(), 2, l.in}, Matrix{y.data(), 2, l.out});
                layer->forward(ConstMatrix{x.data(), 1, l.in}, Matrix{y.data(), 1, l.out});
            } catch (const Error &) {
            }
        }
    } catch (const Error &) {
    }
    return 0;
}
