// libFuzzer harness: the safetensors reader (every dtype, the JSON header)
// and its int4g triples. Only qforge::Error may leave the reader.
#include "fuzz_util.h"

#include "qforge/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    using namespace qforge;
    try {
        const SafetensorsFile s = SafetensorsFile::open(fuzz::as_file(data, size));
        fuzz::check_views(s.tensors(), size);
        for (const auto &t : s.tensors()) {
            if (s.find(t.name) == nullptr || s.find(t.name)->name != t.name) fuzz::violated("find('" + t.name + "')");
        }
        for (const auto &prefix : s.int4g_prefixes()) {
            try {
                const Int4gTensors g = s.int4g(prefix);
                const int64_t groups = (g.in + g.group_size - 1) / g.group_size;
                if (g.group_size < 2 || g.group_size % 2) fuzz::violated("int4g '" + prefix + "': group size");
                if (static_cast<__int128>(g.weight->bytes) != static_cast<__int128>(g.out) * (g.in / 2)) {
                    fuzz::violated("int4g '" + prefix + "': weight bytes");
                }
                // The scales cover out x ceil(in/G), as the kernels read them.
                if (static_cast<__int128>(g.scales->bytes) != static_cast<__int128>(g.out) * groups * 2) {
                    fuzz::violated("int4g '" + prefix + "': scales do not cover out x ceil(in/G)");
                }
                if (g.bias && g.bias->shape != std::vector<int64_t>{g.out}) fuzz::violated("int4g '" + prefix + "': bias");
            } catch (const Error &) {
            }
        }
    } catch (const Error &) {
    }
    return 0;
}
