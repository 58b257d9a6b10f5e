#include "table.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace qforge::cli {

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string text_of(const json &v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d != 0 && std::fabs(d) < 0.01) {
            char b[32];
            std::snprintf(b, sizeof b, "%.2e", d);
            return b;
        }
        return fmt(d, 3);
    }
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string fmt(double v, int decimals) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}

std::string printable(const std::string &s) {
    std::string r;
    r.reserve(s.size());
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            r += b;
        } else {
            r += ch;
        }
    }
    return r;
}

void Table::add(std::vector<json> values) { rows_.push_back(std::move(values)); }

json Table::to_json() const {
    json a = json::array();
    for (const auto &r : rows_) {
        json o = json::object();
        for (size_t i = 0; i < columns_.size() && i < r.size(); ++i) o[columns_[i]] = r[i];
        a.push_back(o);
    }
    return a;
}

void Table::print_text(FILE *out) const {
    std::vector<size_t> width(columns_.size());
    std::vector<std::vector<std::string>> cells;
    for (size_t i = 0; i < columns_.size(); ++i) width[i] = columns_[i].size();
    for (const auto &r : rows_) {
        std::vector<std::string> c;
        for (size_t i = 0; i < columns_.size(); ++i) {
            c.push_back(i < r.size() ? printable(text_of(r[i])) : "");
            width[i] = std::max(width[i], c.back().size());
        }
        cells.push_back(std::move(c));
    }
    auto line = [&](const std::vector<std::string> &c) {
        for (size_t i = 0; i < c.size(); ++i) std::fprintf(out, "%-*s%s", static_cast<int>(width[i]), c[i].c_str(), i + 1 < c.size() ? "  " : "\n");
    };
    line(columns_);
    for (const auto &c : cells) line(c);
}

// A file's names and metadata need not be UTF-8: invalid bytes print as U+FFFD.
void write_json(const json &j) { std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str()); }

Progress::Progress(std::string label, size_t total)
    : label_(std::move(label)), total_(total), start_(now_s()), tty_(isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
}

void Progress::step(const std::string &what) {
    ++done_;
    if (!tty_ || now_s() - start_ < 1.0) return;
    // Work may run past its estimate (bench's passes): a full bar, never past it.
    const int bar = 30, filled = static_cast<int>(std::min<size_t>(bar, bar * done_ / std::max<size_t>(total_, 1)));
    std::fprintf(stderr, "\r\033[K%s [%s%s] %zu/%zu %s", label_.c_str(), std::string(filled, '#').c_str(),
                 std::string(bar - filled, ' ').c_str(), done_, total_, what.c_str());
    std::fflush(stderr);
    drawn_ = true;
}

}  // namespace qforge::cli
