// safetensors: a memory-mapped, zero-copy reader and a writer, including the
// int4g layout ({prefix}.weight_4bit, .scales_4bit, optional .bias).
//
// Opening parses the JSON header and checks every dtype, shape and
// data_offsets pair against the file (in range, the right size, no two
// tensors overlapping) before any view exists; errors name the tensor and
// the byte offset. Opening takes time linear in the header and memory
// bounded by it (README, "Hostile files").
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qforge/gguf.h"  // TensorView

namespace qforge {

class MappedFile;

// The three tensors of one int4g linear layer, checked against each other.
struct Int4gTensors {
    std::string prefix;
    const TensorView *weight = nullptr;   // U8 [out, in/2]
    const TensorView *scales = nullptr;   // F16 [out, n_groups]
    const TensorView *bias = nullptr;     // F32/F16/BF16 [out], or nullptr
    int64_t out = 0, in = 0;
    int group_size = 0;                   // from the metadata "{prefix}.group_size", else ceil(in / n_groups)
};

class SafetensorsFile {
public:
    static SafetensorsFile open(const std::string &path);

    const std::string &path() const { return path_; }
    const std::map<std::string, std::string> &metadata() const { return metadata_; }
    const std::vector<TensorView> &tensors() const { return tensors_; }  // in file order
    const TensorView &tensor(const std::string &name) const;
    const TensorView *find(const std::string &name) const;
    // Prefixes p with a p.weight_4bit tensor.
    std::vector<std::string> int4g_prefixes() const;
    // The int4g layer at `prefix`; throws Error naming the tensor whose shape
    // or dtype does not fit.
    Int4gTensors int4g(const std::string &prefix) const;
    std::shared_ptr<const void> keep_alive() const { return file_; }

private:
    std::string path_;
    std::shared_ptr<MappedFile> file_;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorView> tensors_;
    std::vector<uint32_t> by_name_;  // tensors_ indices, sorted by name
};

// A Hugging Face checkpoint split into shards by an index
// (model.safetensors.index.json: {"weight_map": {tensor: shard file}}, the
// shards beside it), or one file. Opening maps every shard the index names
// and checks that each listed tensor is in its shard; errors name the
// index, the tensor and the shard. Shard names are plain file names: no
// directories, nothing outside the index's own.
class SafetensorsCheckpoint {
public:
    // `path`: an index .json, or one .safetensors file.
    static SafetensorsCheckpoint open(const std::string &path);
    static SafetensorsCheckpoint single(SafetensorsFile f);
    const std::string &path() const { return path_; }
    const std::vector<SafetensorsFile> &shards() const { return shards_; }
    // The shard that holds tensor `name`, or nullptr.
    const SafetensorsFile *shard_of(const std::string &name) const;

private:
    std::string path_;
    std::vector<SafetensorsFile> shards_;
    std::map<std::string, size_t> shard_by_tensor_;  // empty for one file
};

class SafetensorsWriter {
public:
    void set_metadata(const std::string &key, const std::string &value);
    // type: f32, f16, bf16, u8, i8, i32 ... Copies the data.
    void add_tensor(const std::string &name, DType type, const std::vector<int64_t> &shape,
                    const void *data, uint64_t bytes);
    void write(const std::string &path) const;  // atomic, as GGUFWriter

private:
    struct Pending {
        std::string name;
        DType type;
        std::vector<int64_t> shape;
        std::vector<uint8_t> data;
    };
    std::map<std::string, std::string> metadata_;
    std::vector<Pending> tensors_;
};

}  // namespace qforge
