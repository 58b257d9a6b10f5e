// Read-only memory mapping of a whole file, and the atomic file writer the
// writers share (a temporary beside the target, renamed into place).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

// Regular files only (a FIFO or device is refused without blocking).
//
// Built with QF_HEAP_MAPPING (the sanitizer builds and the fuzzers), open()
// reads the file into a heap block of exactly its size instead of mapping
// it: ASan cannot see a read past the end of a mapping (the page's tail is
// readable), but it sees one past a heap block.
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
    bool heap_ = false;
};

// Writes `chunks` one after another to `path`; on any failure removes the
// temporary and throws Error, leaving no file at `path`.
void write_file_atomically(const std::string &path, const std::vector<const std::vector<uint8_t> *> &chunks);

// Bounds-checked little-endian reading of a byte range; errors name `what`
// (the file), the field (`field` followed by `suffix`) and its byte offset.
// The field's name is put together only when reading fails: a reader that
// built it for every element of an array (a key of 64 KiB, copied once per
// element) did work quadratic in the file's size.
class ByteReader {
public:
    ByteReader(const uint8_t *data, uint64_t size, std::string what)
        : data_(data), size_(size), what_(std::move(what)) {}
    uint64_t pos() const { return pos_; }
    uint64_t size() const { return size_; }
    uint64_t left() const { return size_ - pos_; }
    const uint8_t *here() const { return data_ + pos_; }
    void need(uint64_t n, std::string_view field, std::string_view suffix = {}) const;
    void skip(uint64_t n, std::string_view field, std::string_view suffix = {});
    template <typename T>
    T read(std::string_view field, std::string_view suffix = {});
    // The string's bytes, in place (valid while the data is).
    std::string_view read_string(std::string_view field, uint64_t max_len, std::string_view suffix = {});
    [[noreturn]] void fail(std::string_view field, uint64_t at, const std::string &why, std::string_view suffix = {}) const;

private:
    const uint8_t *data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    std::string what_;
};

}  // namespace qforge
