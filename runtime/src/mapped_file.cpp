#include "mapped_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qforge/error.h"

namespace qforge {

std::shared_ptr<MappedFile> MappedFile::open(const std::string &path) {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer (it is refused below).
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->size_ = static_cast<uint64_t>(st.st_size);
    if (f->size_ > 0) {
        void *p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            throw Error(path + ": cannot map: " + std::strerror(errno));
        }
        f->data_ = static_cast<const uint8_t *>(p);
    }
    ::close(fd);
    return f;
}

MappedFile::~MappedFile() {
    if (data_) munmap(const_cast<uint8_t *>(data_), size_);
}

void write_file_atomically(const std::string &path, const std::vector<const std::vector<uint8_t> *> &chunks) {
    const std::string tmp = path + ".qforge-tmp";
    FILE *f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(path + ": cannot write: " + std::strerror(errno));
    bool ok = true;
    for (const auto *c : chunks) {
        if (!c->empty() && std::fwrite(c->data(), 1, c->size(), f) != c->size()) ok = false;
    }
    if (std::fclose(f) != 0) ok = false;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw Error(path + ": write failed: " + why);
    }
}

void ByteReader::fail(const std::string &field, uint64_t at, const std::string &why) const {
    throw Error(what_ + ": " + field + " at byte " + std::to_string(at) + ": " + why);
}

void ByteReader::need(uint64_t n, const std::string &field) const {
    if (n > size_ - pos_) {
        fail(field, pos_, "needs " + std::to_string(n) + " bytes but the file ends at byte " +
                              std::to_string(size_) + " (truncated?)");
    }
}

template <typename T>
T ByteReader::read(const std::string &field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
    pos_ += sizeof(T);
    return v;
}
template uint8_t ByteReader::read<uint8_t>(const std::string &);
template int8_t ByteReader::read<int8_t>(const std::string &);
template uint16_t ByteReader::read<uint16_t>(const std::string &);
template int16_t ByteReader::read<int16_t>(const std::string &);
template uint32_t ByteReader::read<uint32_t>(const std::string &);
template int32_t ByteReader::read<int32_t>(const std::string &);
template uint64_t ByteReader::read<uint64_t>(const std::string &);
template int64_t ByteReader::read<int64_t>(const std::string &);
template float ByteReader::read<float>(const std::string &);
template double ByteReader::read<double>(const std::string &);

std::string ByteReader::read_string(const std::string &field, uint64_t max_len) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(field + " length");
    if (n > max_len) fail(field, at, "length " + std::to_string(n) + " is implausible (limit " + std::to_string(max_len) + ")");
    need(n, field);
    std::string s(reinterpret_cast<const char *>(data_ + pos_), n);
    pos_ += n;
    return s;
}

}  // namespace qforge
