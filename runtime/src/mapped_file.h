// Read-only memory mapping of a whole file, and the atomic file writer the
// writers share (a temporary beside the target, renamed into place).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qforge {

class MappedFile {
public:
    static std::shared_ptr<MappedFile> open(const std::string &path);
    ~MappedFile();
    const uint8_t *data() const { return data_; }
    uint64_t size() const { return size_; }

private:
    MappedFile() = default;
    const uint8_t *data_ = nullptr;
    uint64_t size_ = 0;
};

// Writes `chunks` one after another to `path`; on any failure removes the
// temporary and throws Error, leaving no file at `path`.
void write_file_atomically(const std::string &path, const std::vector<const std::vector<uint8_t> *> &chunks);

// Bounds-checked little-endian reading of a byte range; errors name `what`
// (the file), the field and its byte offset.
class ByteReader {
public:
    ByteReader(const uint8_t *data, uint64_t size, std::string what)
        : data_(data), size_(size), what_(std::move(what)) {}
    uint64_t pos() const { return pos_; }
    uint64_t size() const { return size_; }
    void need(uint64_t n, const std::string &field) const;
    template <typename T>
    T read(const std::string &field);
    std::string read_string(const std::string &field, uint64_t max_len);
    [[noreturn]] void fail(const std::string &field, uint64_t at, const std::string &why) const;

private:
    const uint8_t *data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    std::string what_;
};

}  // namespace qforge
