// libFuzzer harness: the GGUF reader, its metadata values, name lookups and
// the qforge pack metadata. Only qforge::Error may leave the reader.
#include "fuzz_util.h"

#include "qforge/pack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    using namespace qforge;
    try {
        const GGUFFile g = GGUFFile::open(fuzz::as_file(data, size));
        fuzz::check_views(g.tensors(), size);
        if (g.data_offset() % g.alignment() != 0) fuzz::violated("data section not aligned");
        for (const auto &[key, v] : g.metadata()) {
            (void)v.to_string();
            if (v.type == GGUFValue::Type::array && v.count) (void)v.at(v.count - 1);
        }
        for (const auto &t : g.tensors()) {
            if (g.find(t.name) != &t) fuzz::violated("find('" + t.name + "') is not the tensor");
            if (t.offset % g.alignment() != 0) fuzz::violated("'" + t.name + "' not aligned");
            try {
                if (const auto p = packed_tensor(g, t.name)) {
                    if (static_cast<uint64_t>(packed_bytes(p->format, p->out, p->in, p->rows)) != t.bytes) {
                        fuzz::violated("packed '" + t.name + "' accepted with the wrong size");
                    }
                }
            } catch (const Error &) {
            }
        }
    } catch (const Error &) {
    }
    return 0;
}
