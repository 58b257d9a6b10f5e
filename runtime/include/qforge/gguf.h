// GGUF (versions 2 and 3): a memory-mapped, zero-copy reader and a writer.
//
// Opening checks every count, string length, offset and size against the
// file before any tensor view exists; a truncated or corrupt file throws
// qforge::Error naming the field and its byte offset. Views point into the
// mapping and stay valid while any copy of the GGUFFile lives. Opening takes
// time linear in the file's header and memory bounded by it (README,
// "Hostile files").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qforge/dtype.h"
#include "qforge/error.h"

namespace qforge {

// One metadata value.
struct GGUFValue {
    enum class Type : uint32_t {
        u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
        string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
    };
    Type type = Type::u32;
    Type element_type = Type::u32;  // for arrays
    int64_t i = 0;                  // every integer type and bool
    uint64_t u = 0;                 // u64 values beyond int64
    double f = 0;
    std::string s;                  // a string; a string array's elements, one after another

    // Arrays are kept as compactly as the file keeps them (a GGUFValue per
    // element took ~100x an array's bytes): numbers as their little-endian
    // bytes in `raw`, strings concatenated in `s`, element k ending at
    // string_ends[k].
    uint64_t count = 0;             // an array's elements
    std::vector<uint8_t> raw;
    std::vector<uint64_t> string_ends;

    GGUFValue at(uint64_t k) const;  // element k of an array, as a value of element_type
    std::string to_string(size_t max_elements = 8) const;  // for printing
};

// A tensor in a model file. `shape` is outermost first (a linear layer's
// weight is [out, in]); `data` points into the mapped file.
struct TensorView {
    std::string name;
    DType type = DType::f32;
    std::vector<int64_t> shape;
    uint64_t offset = 0;       // from the start of the file
    uint64_t bytes = 0;
    const uint8_t *data = nullptr;

    int64_t elements() const;
};

class MappedFile;

class GGUFFile {
public:
    static GGUFFile open(const std::string &path);

    const std::string &path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    const std::map<std::string, GGUFValue> &metadata() const { return metadata_; }
    const std::vector<TensorView> &tensors() const { return tensors_; }  // in file order
    // The tensor called `name` (a binary search); throws Error if none.
    const TensorView &tensor(const std::string &name) const;
    const TensorView *find(const std::string &name) const;
    // Keeps the mapping (and so every view's data) alive.
    std::shared_ptr<const void> keep_alive() const { return file_; }

private:
    std::string path_;
    std::shared_ptr<MappedFile> file_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::map<std::string, GGUFValue> metadata_;
    std::vector<TensorView> tensors_;
    std::vector<uint32_t> by_name_;  // tensors_ indices, sorted by name
};

// Builds a GGUF v3 file in memory and writes it atomically (a temporary file
// renamed into place, so a failed write leaves nothing behind).
class GGUFWriter {
public:
    explicit GGUFWriter(uint64_t alignment = 32) : alignment_(alignment) {}
    void set(const std::string &key, GGUFValue value);
    void set_string(const std::string &key, const std::string &v);
    void set_u32(const std::string &key, uint32_t v);
    void set_f32(const std::string &key, float v);
    // Copies `bytes` bytes; shape is outermost first.
    void add_tensor(const std::string &name, DType type, const std::vector<int64_t> &shape,
                    const void *data, uint64_t bytes);
    void write(const std::string &path) const;

private:
    struct Pending {
        std::string name;
        DType type;
        std::vector<int64_t> shape;
        std::vector<uint8_t> data;
    };
    uint64_t alignment_;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::vector<Pending> tensors_;
};

}  // namespace qforge
