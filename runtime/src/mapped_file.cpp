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
#ifdef QF_HEAP_MAPPING
    if (f->size_ > 0) {
        auto *p = new uint8_t[f->size_];
        f->data_ = p;
        f->heap_ = true;
        for (uint64_t done = 0; done < f->size_;) {
            const ssize_t got = ::pread(fd, p + done, f->size_ - done, static_cast<off_t>(done));
            if (got <= 0) {
                ::close(fd);
                throw Error(path + ": cannot read: " + (got < 0 ? std::strerror(errno) : "file shrank while read"));
            }
            done += static_cast<uint64_t>(got);
        }
    }
    ::close(fd);
    return f;
#endif
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
    if (heap_) {
        delete[] data_;
    } else if (data_) {
        munmap(const_cast<uint8_t *>(data_), size_);
    }
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

void ByteReader::fail(std::string_view field, uint64_t at, const std::string &why, std::string_view suffix) const {
    throw Error(what_ + ": " + std::string(field) + std::string(suffix) + " at byte " + std::to_string(at) + ": " + why);
}

void ByteReader::need(uint64_t n, std::string_view field, std::string_view suffix) const {
    if (n > size_ - pos_) {
        fail(field, pos_, "needs " + std::to_string(n) + " bytes but the file ends at byte " + std::to_string(size_) + " (truncated?)",
             suffix);
    }
}

void ByteReader::skip(uint64_t n, std::string_view field, std::string_view suffix) {
    need(n, field, suffix);
    pos_ += n;
}

template <typename T>
T ByteReader::read(std::string_view field, std::string_view suffix) {
    need(sizeof(T), field, suffix);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
    pos_ += sizeof(T);
    return v;
}
#define QF_READ(T) template T ByteReader::read<T>(std::string_view, std::string_view);
QF_READ(uint8_t)
QF_READ(int8_t)
QF_READ(uint16_t)
QF_READ(int16_t)
QF_READ(uint32_t)
QF_READ(int32_t)
QF_READ(uint64_t)
QF_READ(int64_t)
QF_READ(float)
QF_READ(double)
#undef QF_READ

std::string_view ByteReader::read_string(std::string_view field, uint64_t max_len, std::string_view suffix) {
    const uint64_t at = pos_;
    if (left() < 8) need(8, std::string(field) + std::string(suffix) + " length");
    uint64_t n;
    std::memcpy(&n, data_ + pos_, 8);
    pos_ += 8;
    if (n > max_len) fail(field, at, "length " + std::to_string(n) + " is implausible (limit " + std::to_string(max_len) + ")", suffix);
    need(n, field, suffix);
    std::string_view s(reinterpret_cast<const char *>(data_ + pos_), n);
    pos_ += n;
    return s;
}

}  // namespace qforge
