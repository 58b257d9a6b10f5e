#include "json_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "qforge/error.h"

namespace qforge::internal {

void check_json_depth(const char *text, uint64_t n, const std::string &path, uint64_t first_byte) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (uint64_t i = 0; i < n; ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxJsonDepth) {
                throw Error(path + ": JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels at byte " +
                            std::to_string(first_byte + i));
            }
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
}

nlohmann::json read_json_file(const std::string &path, uint64_t max_bytes) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw Error(path + ": cannot open (" + ec.message() + ")");
    if (size > max_bytes) {
        throw Error(path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                    " a JSON file here may have");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    check_json_depth(text.data(), text.size(), path, 0);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception &e) {
        throw Error(path + ": " + e.what());
    }
}

}  // namespace qforge::internal
