#include "qforge/gguf.h"

#include <cstring>
#include <iterator>

#include "mapped_file.h"
#include "tensor_views.h"

namespace qforge {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxString = 1ull << 24;
constexpr uint64_t kMaxKey = 65535;      // the GGUF spec's limit on a key
constexpr uint64_t kMaxKv = 1ull << 16;  // llama.cpp's files have < 100; bounds the per-key overhead
constexpr uint64_t kMaxTensors = 1ull << 31;
constexpr uint64_t kMaxDims = 4;         // GGML_MAX_DIMS

using VT = GGUFValue::Type;

uint64_t scalar_size(VT t) {
    switch (t) {
    case VT::u8: case VT::i8: case VT::boolean: return 1;
    case VT::u16: case VT::i16: return 2;
    case VT::u32: case VT::i32: case VT::f32: return 4;
    case VT::u64: case VT::i64: case VT::f64: return 8;
    default: return 0;
    }
}

// A scalar of type t from its little-endian bytes at p.
GGUFValue scalar_at(VT t, const uint8_t *p) {
    GGUFValue v;
    v.type = t;
    auto get = [&](auto x) {
        std::memcpy(&x, p, sizeof x);
        return x;
    };
    switch (t) {
    case VT::u8: case VT::boolean: v.i = get(uint8_t{}); break;
    case VT::i8: v.i = get(int8_t{}); break;
    case VT::u16: v.i = get(uint16_t{}); break;
    case VT::i16: v.i = get(int16_t{}); break;
    case VT::u32: v.i = get(uint32_t{}); break;
    case VT::i32: v.i = get(int32_t{}); break;
    case VT::f32: v.f = get(float{}); break;
    case VT::f64: v.f = get(double{}); break;
    case VT::i64: v.i = get(int64_t{}); break;
    case VT::u64: v.u = get(uint64_t{}); v.i = static_cast<int64_t>(v.u); break;
    default: break;
    }
    return v;
}

void check_bools(ByteReader &in, const uint8_t *p, uint64_t n, std::string_view field) {
    for (uint64_t k = 0; k < n; ++k) {
        if (p[k] > 1) in.fail(field, in.pos() + k, "bool value " + std::to_string(p[k]) + " is neither 0 nor 1");
    }
}

GGUFValue read_value(ByteReader &in, VT type, std::string_view field) {
    const uint64_t at = in.pos();
    if (type == VT::string) {
        GGUFValue v;
        v.type = type;
        v.s = in.read_string(field, kMaxString);
        return v;
    }
    if (type != VT::array) {
        const uint64_t size = scalar_size(type);
        if (size == 0) in.fail(field, at, "unknown value type " + std::to_string(static_cast<uint32_t>(type)));
        in.need(size, field);
        if (type == VT::boolean) check_bools(in, in.here(), 1, field);
        GGUFValue v = scalar_at(type, in.here());
        in.skip(size, field);
        return v;
    }
    GGUFValue v;
    v.type = type;
    const uint32_t et = in.read<uint32_t>(field, " element type");
    if (et > 12) in.fail(field, at, "unknown array element type " + std::to_string(et));
    if (static_cast<VT>(et) == VT::array) in.fail(field, at, "nested arrays are not supported");
    v.element_type = static_cast<VT>(et);
    const uint64_t count_at = in.pos();
    const uint64_t n = in.read<uint64_t>(field, " count");
    // Each element takes at least one byte (8 for a string's length).
    const uint64_t min_bytes = v.element_type == VT::string ? 8 : scalar_size(v.element_type);
    if (n > in.left() / min_bytes) in.fail(field, count_at, std::to_string(n) + " elements cannot fit in the rest of the file", " count");
    v.count = n;
    if (v.element_type != VT::string) {
        // Numbers stay as the file's bytes: n x their size, no more.
        const uint64_t bytes = n * min_bytes;
        if (v.element_type == VT::boolean) check_bools(in, in.here(), n, field);
        v.raw.assign(in.here(), in.here() + bytes);
        in.skip(bytes, field);
        return v;
    }
    // Strings: measured first so that both buffers are allocated once, at their size.
    ByteReader probe = in;
    uint64_t chars = 0;
    for (uint64_t k = 0; k < n; ++k) chars += probe.read_string(field, kMaxString).size();
    v.s.reserve(chars);
    v.string_ends.reserve(n);
    for (uint64_t k = 0; k < n; ++k) {
        v.s += in.read_string(field, kMaxString);
        v.string_ends.push_back(v.s.size());
    }
    return v;
}

}  // namespace

GGUFValue GGUFValue::at(uint64_t k) const {
    if (type != Type::array || k >= count) {
        throw Error("GGUF value: element " + std::to_string(k) + " of " + (type == Type::array ? std::to_string(count) + " elements" : "a non-array"));
    }
    if (element_type != Type::string) return scalar_at(element_type, raw.data() + k * scalar_size(element_type));
    GGUFValue v;
    v.type = Type::string;
    const uint64_t begin = k ? string_ends[k - 1] : 0;
    v.s = s.substr(begin, string_ends[k] - begin);
    return v;
}

std::string GGUFValue::to_string(size_t max_elements) const {
    switch (type) {
    case Type::f32: case Type::f64: {
        char b[32];
        std::snprintf(b, sizeof b, "%g", f);
        return b;
    }
    case Type::u64: return std::to_string(u);
    case Type::boolean: return i ? "true" : "false";
    case Type::string: return s;
    case Type::array: {
        std::string r = "[";
        for (uint64_t k = 0; k < count && k < max_elements; ++k) r += (k ? ", " : "") + at(k).to_string();
        if (count > max_elements) r += ", ... (" + std::to_string(count) + " elements)";
        return r + "]";
    }
    default: return std::to_string(i);
    }
}

GGUFFile GGUFFile::open(const std::string &path) {
    GGUFFile g;
    g.path_ = path;
    g.file_ = MappedFile::open(path);
    ByteReader in(g.file_->data(), g.file_->size(), path);
    const uint32_t magic = in.read<uint32_t>("magic");
    if (magic != kMagic) in.fail("magic", 0, "not a GGUF file (expected the bytes 'GGUF')");
    g.version_ = in.read<uint32_t>("version");
    if (g.version_ != 2 && g.version_ != 3) {
        in.fail("version", 4, "version " + std::to_string(g.version_) + " is not supported (2 and 3 are)");
    }
    const uint64_t n_tensors = in.read<uint64_t>("tensor count");
    const uint64_t n_kv = in.read<uint64_t>("metadata count");
    // Every key/value takes at least 8+0+4+1 bytes and every tensor info 8+4+8+4+8.
    if (n_kv > in.size() / 13) in.fail("metadata count", 16, std::to_string(n_kv) + " entries cannot fit in the file");
    if (n_kv > kMaxKv) in.fail("metadata count", 16, std::to_string(n_kv) + " entries (qforge reads at most " + std::to_string(kMaxKv) + ")");
    if (n_tensors > in.size() / 32) in.fail("tensor count", 8, std::to_string(n_tensors) + " tensors cannot fit in the file");
    if (n_tensors > kMaxTensors) in.fail("tensor count", 8, std::to_string(n_tensors) + " tensors (at most 2^31)");

    for (uint64_t k = 0; k < n_kv; ++k) {
        const std::string field = "metadata #" + std::to_string(k);
        const uint64_t at = in.pos();
        std::string key(in.read_string(field, kMaxKey, " key"));
        const std::string named = field + " ('" + key + "')";
        const uint32_t type = in.read<uint32_t>(named, " type");
        if (type > 12) in.fail(named, in.pos() - 4, "unknown value type " + std::to_string(type), " type");
        GGUFValue v = read_value(in, static_cast<VT>(type), named);
        if (g.metadata_.count(key)) in.fail(field, at, "duplicate key '" + key + "'");
        g.metadata_.emplace(std::move(key), std::move(v));
    }
    if (auto it = g.metadata_.find("general.alignment"); it != g.metadata_.end()) {
        const int64_t a = it->second.i;
        if (it->second.type != VT::u32 || a <= 0 || (a & (a - 1)) != 0) {
            throw Error(path + ": general.alignment must be a u32 power of two, not " + it->second.to_string());
        }
        g.alignment_ = static_cast<uint64_t>(a);
    }

    std::vector<uint64_t> info_at;
    info_at.reserve(n_tensors);
    g.tensors_.reserve(n_tensors);
    for (uint64_t t = 0; t < n_tensors; ++t) {
        const std::string field = "tensor info #" + std::to_string(t);
        TensorView v;
        info_at.push_back(in.pos());
        v.name = in.read_string(field, 65536, " name");
        const std::string f = field + " ('" + v.name + "')";
        const uint64_t dims_at = in.pos();
        const uint32_t n_dims = in.read<uint32_t>(f, " n_dims");
        if (n_dims == 0 || n_dims > kMaxDims) in.fail(f, dims_at, std::to_string(n_dims) + " dimensions (1..4 allowed)", " n_dims");
        int64_t ne[kMaxDims];
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t at = in.pos();
            const uint64_t x = in.read<uint64_t>(f, " ne");
            if (x == 0 || x > (1ull << 40)) in.fail(f, at, "dimension " + std::to_string(x) + " is out of range", " ne");
            ne[d] = static_cast<int64_t>(x);
        }
        v.shape.assign(std::make_reverse_iterator(ne + n_dims), std::make_reverse_iterator(ne));
        const uint64_t type_at = in.pos();
        v.type = static_cast<DType>(in.read<uint32_t>(f, " type"));
        if (!is_known(v.type) || v.type == DType::u8) {
            in.fail(f, type_at, "unknown ggml type " + std::to_string(static_cast<uint32_t>(v.type)), " type");
        }
        const uint64_t off_at = in.pos();
        v.offset = in.read<uint64_t>(f, " offset");
        if (v.offset % g.alignment_ != 0) {
            in.fail(f, off_at, "offset " + std::to_string(v.offset) + " is not a multiple of the alignment " + std::to_string(g.alignment_),
                    " offset");
        }
        const BlockShape bs = block_shape(v.type);
        if (ne[0] % bs.elements != 0) {
            in.fail(f, dims_at + 4, "row length " + std::to_string(ne[0]) + " is not a multiple of the " + to_string(v.type) +
                                        " block size " + std::to_string(bs.elements), " ne");
        }
        v.bytes = checked_bytes(v.type, v.shape, path + ": " + f);
        g.tensors_.push_back(std::move(v));
    }
    int64_t dup = -1;
    g.by_name_ = name_index(g.tensors_, &dup);
    if (dup >= 0) {
        in.fail("tensor info #" + std::to_string(dup) + " ('" + g.tensors_[dup].name + "')", info_at[dup], "duplicate tensor name", " name");
    }
    g.data_offset_ = (in.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
    if (g.data_offset_ > in.size() && n_tensors > 0) {
        in.fail("data section", g.data_offset_, "starts past the end of the file (" + std::to_string(in.size()) + " bytes)");
    }
    for (size_t t = 0; t < g.tensors_.size(); ++t) {
        TensorView &v = g.tensors_[t];
        const uint64_t rel = v.offset;
        const uint64_t room = in.size() > g.data_offset_ ? in.size() - g.data_offset_ : 0;
        if (rel > room || v.bytes > room - rel) {
            throw Error(path + ": tensor info #" + std::to_string(t) + " ('" + v.name + "') offset at byte " +
                        std::to_string(info_at[t]) + ": data bytes " + std::to_string(g.data_offset_ + rel) + ".." +
                        std::to_string(g.data_offset_ + rel + v.bytes) + " run past the end of the file (" +
                        std::to_string(in.size()) + " bytes)");
        }
        v.offset = g.data_offset_ + rel;
        v.data = g.file_->data() + v.offset;
    }
    check_no_overlap(g.tensors_, path);
    return g;
}

const TensorView *GGUFFile::find(const std::string &name) const { return find_by_name(tensors_, by_name_, name); }


const TensorView &GGUFFile::tensor(const std::string &name) const {
    if (const TensorView *t = find(name)) return *t;
    throw Error(path_ + ": no tensor named '" + name + "' (" + std::to_string(tensors_.size()) + " tensors in the file)");
}

// ---- writer ----

namespace {

struct Out {
    std::vector<uint8_t> b;
    template <typename T>
    void put(T v) {
        const auto *p = reinterpret_cast<const uint8_t *>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string &s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void pad(uint64_t alignment) {
        while (b.size() % alignment) b.push_back(0);
    }
};

void put_value(Out &o, const GGUFValue &v, bool with_type) {
    if (with_type) o.put<uint32_t>(static_cast<uint32_t>(v.type));
    switch (v.type) {
    case VT::u8: case VT::i8: case VT::boolean: o.put<uint8_t>(static_cast<uint8_t>(v.i)); break;
    case VT::u16: case VT::i16: o.put<uint16_t>(static_cast<uint16_t>(v.i)); break;
    case VT::u32: case VT::i32: o.put<uint32_t>(static_cast<uint32_t>(v.i)); break;
    case VT::f32: o.put<float>(static_cast<float>(v.f)); break;
    case VT::f64: o.put<double>(v.f); break;
    case VT::u64: o.put<uint64_t>(v.u ? v.u : static_cast<uint64_t>(v.i)); break;
    case VT::i64: o.put<int64_t>(v.i); break;
    case VT::string: o.str(v.s); break;
    case VT::array:
        o.put<uint32_t>(static_cast<uint32_t>(v.element_type));
        o.put<uint64_t>(v.count);
        if (v.element_type == VT::string) {
            for (uint64_t k = 0; k < v.count; ++k) o.str(v.at(k).s);
        } else {
            o.b.insert(o.b.end(), v.raw.begin(), v.raw.end());
        }
        break;
    }
}

}  // namespace

void GGUFWriter::set(const std::string &key, GGUFValue value) {
    if (key.size() > kMaxKey) throw Error("GGUF key of " + std::to_string(key.size()) + " bytes (at most 65535)");
    if (value.type == VT::array) {
        const bool strings = value.element_type == VT::string;
        bool ok = strings ? value.string_ends.size() == value.count
                          : scalar_size(value.element_type) && value.raw.size() == value.count * scalar_size(value.element_type);
        for (uint64_t k = 0; ok && strings && k < value.count; ++k) {
            ok = value.string_ends[k] >= (k ? value.string_ends[k - 1] : 0) && value.string_ends[k] <= value.s.size();
        }
        if (!ok) throw Error("GGUF key '" + key + "': an array whose count, raw bytes and string ends disagree");
    }
    for (auto &kv : kv_) {
        if (kv.first == key) {
            kv.second = std::move(value);
            return;
        }
    }
    kv_.emplace_back(key, std::move(value));
}

void GGUFWriter::set_string(const std::string &key, const std::string &v) {
    GGUFValue g;
    g.type = VT::string;
    g.s = v;
    set(key, g);
}

void GGUFWriter::set_u32(const std::string &key, uint32_t v) {
    GGUFValue g;
    g.type = VT::u32;
    g.i = v;
    set(key, g);
}

void GGUFWriter::set_f32(const std::string &key, float v) {
    GGUFValue g;
    g.type = VT::f32;
    g.f = v;
    set(key, g);
}

void GGUFWriter::add_tensor(const std::string &name, DType type, const std::vector<int64_t> &shape,
                            const void *data, uint64_t bytes) {
    const std::string where = "GGUF tensor '" + name + "'";
    if (shape.empty() || shape.size() > kMaxDims) throw Error(where + ": 1 to 4 dimensions, not " + std::to_string(shape.size()));
    const int64_t n = checked_elements(shape, where);
    if (!is_known(type) || type == DType::u8) throw Error(where + ": type " + to_string(type) + " has no GGUF number");
    if (shape.back() % block_shape(type).elements != 0) {
        throw Error(where + ": row length " + std::to_string(shape.back()) + " is not whole " + to_string(type) + " blocks");
    }
    if (static_cast<uint64_t>(storage_bytes(type, n)) != bytes) {
        throw Error(where + ": " + to_string(type) + " " + shape_string(shape) + " takes " +
                    std::to_string(storage_bytes(type, n)) + " bytes, not " + std::to_string(bytes));
    }
    for (const auto &t : tensors_) {
        if (t.name == name) throw Error(where + ": added twice");
    }
    const auto *p = static_cast<const uint8_t *>(data);
    tensors_.push_back({name, type, shape, std::vector<uint8_t>(p, p + bytes)});
}

void GGUFWriter::write(const std::string &path) const {
    Out h;
    h.put<uint32_t>(kMagic);
    h.put<uint32_t>(3);
    h.put<uint64_t>(tensors_.size());
    const bool has_alignment = alignment_ != 32;
    h.put<uint64_t>(kv_.size() + (has_alignment ? 1 : 0));
    if (has_alignment) {
        h.str("general.alignment");
        GGUFValue a;
        a.type = VT::u32;
        a.i = static_cast<int64_t>(alignment_);
        put_value(h, a, true);
    }
    for (const auto &[k, v] : kv_) {
        h.str(k);
        put_value(h, v, true);
    }
    uint64_t offset = 0;
    for (const auto &t : tensors_) {
        h.str(t.name);
        h.put<uint32_t>(t.shape.size());
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) h.put<uint64_t>(*it);
        h.put<uint32_t>(static_cast<uint32_t>(t.type));
        h.put<uint64_t>(offset);
        offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
    }
    h.pad(alignment_);
    std::vector<std::vector<uint8_t>> pads;
    pads.reserve(tensors_.size());
    std::vector<const std::vector<uint8_t> *> chunks{&h.b};
    for (const auto &t : tensors_) {
        chunks.push_back(&t.data);
        pads.emplace_back((alignment_ - t.data.size() % alignment_) % alignment_, 0);
        chunks.push_back(&pads.back());
    }
    write_file_atomically(path, chunks);
}

}  // namespace qforge
