#include "qforge/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "json_file.h"
#include "mapped_file.h"
#include "tensor_views.h"

namespace qforge {
namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit

struct StDtype {
    const char *name;
    DType type;
};
constexpr StDtype kDtypes[] = {
    {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16}, {"F64", DType::f64},
    {"U8", DType::u8},   {"I8", DType::i8},   {"I16", DType::i16},   {"I32", DType::i32},
    {"I64", DType::i64}, {"F8_E4M3", DType::f8_e4m3},
};

// What a header may hold. A tensor's entry needs a few keys and short
// arrays; __metadata__ holds string pairs. Bounding each entry's items keeps
// a hostile header's memory near its own size (README, "Hostile files"): an
// entry's DOM exists only while it is read, and no entry can be a large tree.
constexpr uint64_t kMaxTensorItems = 256;         // keys, values and containers in one tensor's entry
constexpr uint64_t kMaxMetadata = 1ull << 16;     // __metadata__ entries

// Parses the header one top-level entry at a time: `entry(name, value)` sees
// each entry once, then its DOM is dropped, so a header never exists twice
// in memory. Refuses a key that appears twice in one inner object (JSON
// leaves it open; nlohmann would keep the last one silently); the readers
// check top-level names once all are known.
template <typename Entry>
void parse_header(const char *text, uint64_t n, const std::string &path, Entry entry) {
    internal::check_json_depth(text, n, path, 8);  // the header starts after its 8-byte length
    std::vector<std::set<std::string>> keys;  // of each open object below the top level
    int open = 0;                             // containers open
    std::string name;                         // the top-level key whose value is being read
    uint64_t items = 0, limit = 0;            // in that entry
    auto bad = [&](const std::string &why) { throw Error(path + ": JSON header: " + why); };
    auto count_item = [&] {
        if (open >= 2 && ++items > limit) {
            bad("entry '" + clipped(name) + "' holds more than " +
                (name == "__metadata__" ? std::to_string(kMaxMetadata) + " keys" : std::to_string(kMaxTensorItems) + " values"));
        }
    };
    auto callback = [&](int depth, json::parse_event_t event, json &parsed) -> bool {
        using E = json::parse_event_t;
        if (open == 0 && depth == 0 && event != E::object_start && event != E::object_end) bad("at byte 8 is not an object");
        switch (event) {
        case E::object_start:
        case E::array_start:
            count_item();
            if (open++ >= 1 && event == E::object_start) keys.emplace_back();
            return true;
        case E::key: {
            if (open == 1) {
                name = std::move(parsed.get_ref<std::string &>());
                items = 0;
                limit = name == "__metadata__" ? 2 * kMaxMetadata : kMaxTensorItems;
                return true;
            }
            count_item();
            if (!keys.back().insert(parsed.get<std::string>()).second) {
                bad("key '" + clipped(parsed.get<std::string>()) + "' appears twice in one object");
            }
            return true;
        }
        case E::value:
            count_item();
            break;
        case E::object_end:
            if (open-- >= 2) keys.pop_back();
            break;
        case E::array_end:
            --open;
            break;
        }
        if (depth == 1) {  // one top-level entry is complete
            entry(name, parsed);
            return false;  // and is not kept
        }
        return true;
    };
    try {
        const json root = json::parse(text, text + n, callback);  // holds nothing: every entry was dropped
        (void)root;
    } catch (const json::parse_error &e) {
        throw Error(path + ": JSON header at byte 8: " + e.what());
    } catch (const json::exception &e) {  // only qforge::Error leaves a reader
        throw Error(path + ": JSON header: " + e.what());
    }
}

const char *st_name(DType t) {
    for (const auto &d : kDtypes) {
        if (d.type == t) return d.name;
    }
    return nullptr;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string &path) {
    SafetensorsFile s;
    s.path_ = path;
    s.file_ = MappedFile::open(path);
    ByteReader in(s.file_->data(), s.file_->size(), path);
    const uint64_t n = in.read<uint64_t>("header length");
    if (n > kMaxHeader) in.fail("header length", 0, std::to_string(n) + " bytes exceeds the 100 MB limit (not a safetensors file?)");
    in.need(n, "JSON header");
    const char *text = reinterpret_cast<const char *>(s.file_->data() + 8);
    const uint64_t data_begin = 8 + n;
    const uint64_t room = s.file_->size() - data_begin;
    // The smallest entry, '"":{"dtype":"U8","shape":[],"data_offsets":[0,0]}', is 48 bytes.
    s.tensors_.reserve(n / 48);
    bool had_metadata = false;
    auto read_entry = [&](std::string &name, json &e) {
        if (name == "__metadata__") {
            if (had_metadata) throw Error(path + ": JSON header: key '__metadata__' appears twice in one object");
            had_metadata = true;
            if (!e.is_object()) throw Error(path + ": __metadata__ is not an object");
            for (auto m = e.begin(); m != e.end(); ++m) {
                if (!m->is_string()) throw Error(path + ": __metadata__ '" + clipped(m.key()) + "' is not a string");
                s.metadata_[m.key()] = std::move(m->get_ref<std::string &>());
            }
            return;
        }
        const std::string where = path + ": tensor '" + clipped(name) + "'";
        if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
            throw Error(where + ": needs dtype, shape and data_offsets");
        }
        TensorView v;
        v.name = std::move(name);
        if (!e["dtype"].is_string()) throw Error(where + ": dtype is not a string");
        const std::string &dt = e["dtype"].get_ref<const std::string &>();
        bool known = false;
        for (const auto &d : kDtypes) {
            if (dt == d.name) {
                v.type = d.type;
                known = true;
            }
        }
        if (!known) throw Error(where + ": unsupported dtype '" + clipped(dt) + "'");
        if (!e["shape"].is_array()) throw Error(where + ": shape is not an array");
        v.shape.reserve(e["shape"].size());
        for (const auto &d : e["shape"]) {
            if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                throw Error(where + ": shape " + e["shape"].dump() + " has a dimension that is not an integer in [0, 2^63)");
            }
            v.shape.push_back(d.get<int64_t>());
        }
        const json &off = e["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
            throw Error(where + ": data_offsets must be two unsigned integers, not " + off.dump());
        }
        const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
        if (begin > end || end > room) {
            throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] (file bytes " +
                        std::to_string(data_begin + begin) + ".." + std::to_string(data_begin + end) +
                        ") run past the end of the file (" + std::to_string(s.file_->size()) + " bytes)");
        }
        v.bytes = end - begin;
        const uint64_t want = checked_bytes(v.type, v.shape, where, /*allow_zero=*/true);  // the format allows empty tensors
        if (v.bytes != want) {
            throw Error(where + ": " + dt + " " + shape_string(v.shape) + " needs " + std::to_string(want) +
                        " bytes but data_offsets give " + std::to_string(v.bytes) + " (at byte " +
                        std::to_string(data_begin + begin) + ")");
        }
        v.offset = data_begin + begin;
        v.data = s.file_->data() + v.offset;
        s.tensors_.push_back(std::move(v));
    };
    parse_header(text, n, path, read_entry);
    std::stable_sort(s.tensors_.begin(), s.tensors_.end(), [](const TensorView &a, const TensorView &b) { return a.offset < b.offset; });
    int64_t dup = -1;
    s.by_name_ = name_index(s.tensors_, &dup);
    if (dup >= 0) throw Error(path + ": JSON header: key '" + clipped(s.tensors_[dup].name) + "' appears twice in one object");
    check_no_overlap(s.tensors_, path);
    return s;
}

const TensorView *SafetensorsFile::find(const std::string &name) const { return find_by_name(tensors_, by_name_, name); }

const TensorView &SafetensorsFile::tensor(const std::string &name) const {
    if (const TensorView *t = find(name)) return *t;
    throw Error(path_ + ": no tensor named '" + name + "'");
}

std::vector<std::string> SafetensorsFile::int4g_prefixes() const {
    static const std::string suffix = ".weight_4bit";
    std::vector<std::string> r;
    for (const auto &t : tensors_) {
        if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            r.push_back(t.name.substr(0, t.name.size() - suffix.size()));
        }
    }
    return r;
}

Int4gTensors SafetensorsFile::int4g(const std::string &prefix) const {
    Int4gTensors g;
    g.prefix = prefix;
    g.weight = find(prefix + ".weight_4bit");
    g.scales = find(prefix + ".scales_4bit");
    g.bias = find(prefix + ".bias");
    const std::string where = path_ + ": int4g layer '" + prefix + "'";
    if (!g.weight) throw Error(where + ": no tensor " + prefix + ".weight_4bit");
    if (!g.scales) throw Error(where + ": no tensor " + prefix + ".scales_4bit");
    const TensorView &w = *g.weight, &s = *g.scales;
    if (w.type != DType::u8 || w.shape.size() != 2) {
        throw Error(where + ": " + w.name + " must be U8 [out, in/2], not " + to_string(w.type) + " " + shape_string(w.shape));
    }
    g.out = w.shape[0];
    g.in = 2 * w.shape[1];
    if (s.type != DType::f16 || s.shape.size() != 2 || s.shape[0] != g.out) {
        throw Error(where + ": " + s.name + " must be F16 [" + std::to_string(g.out) + ", n_groups], not " +
                    to_string(s.type) + " " + shape_string(s.shape));
    }
    const int64_t groups = s.shape[1];
    int64_t G = (g.in + groups - 1) / groups;
    if (auto it = metadata_.find(prefix + ".group_size"); it != metadata_.end()) {
        const std::string &v = it->second;  // the whole string, digits only ("32abc" is not 32)
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), G);
        if (ec != std::errc() || end != v.data() + v.size()) {
            throw Error(where + ": metadata " + prefix + ".group_size = '" + v + "' is not an integer");
        }
    }
    // Checked before the narrowing to int below: a group size past int's
    // range would otherwise wrap to a small one whose scales the file lacks.
    if (G > std::numeric_limits<int>::max()) {
        throw Error(where + ": group size " + std::to_string(G) + " is larger than 2^31 - 1");
    }
    if (G < 2 || G % 2 != 0 || (g.in + G - 1) / G != groups) {
        throw Error(where + ": " + s.name + " " + shape_string(s.shape) + " does not fit in = " + std::to_string(g.in) +
                    " with group size " + std::to_string(G) + " (expected " + std::to_string(g.out) + " x ceil(in/G) groups)");
    }
    g.group_size = static_cast<int>(G);
    if (g.bias) {
        const TensorView &b = *g.bias;
        if ((b.type != DType::f32 && b.type != DType::f16 && b.type != DType::bf16) || b.shape.size() != 1 ||
            b.shape[0] != g.out) {
            throw Error(where + ": " + b.name + " must be F32/F16/BF16 [" + std::to_string(g.out) + "], not " +
                        to_string(b.type) + " " + shape_string(b.shape));
        }
    }
    return g;
}

void SafetensorsWriter::set_metadata(const std::string &key, const std::string &value) { metadata_[key] = value; }

void SafetensorsWriter::add_tensor(const std::string &name, DType type, const std::vector<int64_t> &shape,
                                   const void *data, uint64_t bytes) {
    const std::string where = "safetensors tensor '" + name + "'";
    if (!st_name(type)) throw Error(where + ": type " + to_string(type) + " has no safetensors dtype");
    const int64_t n = shape.empty() ? 1 : checked_elements(shape, where, /*allow_zero=*/true);
    if (static_cast<uint64_t>(n) * block_shape(type).bytes != bytes) {
        throw Error(where + ": " + shape_string(shape) + " of " + to_string(type) + " is not " + std::to_string(bytes) + " bytes");
    }
    for (const auto &t : tensors_) {
        if (t.name == name) throw Error(where + ": added twice");
    }
    const auto *p = static_cast<const uint8_t *>(data);
    tensors_.push_back({name, type, shape, std::vector<uint8_t>(p, p + bytes)});
}

void SafetensorsWriter::write(const std::string &path) const {
    json header = json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (const auto &t : tensors_) {
        header[t.name] = {{"dtype", st_name(t.type)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
        offset += t.data.size();
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8) text.push_back(' ');  // keeps the data 8-byte aligned
    std::vector<uint8_t> head(8 + text.size());
    const uint64_t n = text.size();
    std::memcpy(head.data(), &n, 8);
    std::memcpy(head.data() + 8, text.data(), text.size());
    std::vector<const std::vector<uint8_t> *> chunks{&head};
    for (const auto &t : tensors_) chunks.push_back(&t.data);
    write_file_atomically(path, chunks);
}

SafetensorsCheckpoint SafetensorsCheckpoint::single(SafetensorsFile f) {
    SafetensorsCheckpoint c;
    c.path_ = f.path();
    c.shards_.push_back(std::move(f));
    return c;
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string &path) {
    namespace fs = std::filesystem;
    if (fs::path(path).extension() != ".json") return single(SafetensorsFile::open(path));
    const nlohmann::json j = internal::read_json_file(path);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
        throw Error(path + ": no 'weight_map' object (a safetensors index maps tensor names to shard files)");
    }
    SafetensorsCheckpoint c;
    c.path_ = path;
    std::map<std::string, size_t> shard_index;
    for (const auto &[tensor, file] : j["weight_map"].items()) {
        if (!file.is_string()) throw Error(path + ": weight_map['" + tensor + "'] is not a file name");
        const std::string name = file.get<std::string>();
        if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos || name == "." ||
            name == "..") {
            throw Error(path + ": weight_map['" + tensor + "'] = '" + name + "' is not a file name beside the index");
        }
        auto it = shard_index.find(name);
        if (it == shard_index.end()) {
            it = shard_index.emplace(name, c.shards_.size()).first;
            c.shards_.push_back(SafetensorsFile::open((fs::path(path).parent_path() / name).string()));
        }
        if (!c.shards_[it->second].find(tensor)) {
            throw Error(path + ": tensor '" + tensor + "' is not in its shard " + name);
        }
        c.shard_by_tensor_.emplace(tensor, it->second);
    }
    if (c.shards_.empty()) throw Error(path + ": weight_map is empty");
    return c;
}

const SafetensorsFile *SafetensorsCheckpoint::shard_of(const std::string &name) const {
    if (shard_by_tensor_.empty()) return shards_.front().find(name) ? &shards_.front() : nullptr;
    const auto it = shard_by_tensor_.find(name);
    return it == shard_by_tensor_.end() ? nullptr : &shards_[it->second];
}

}  // namespace qforge
