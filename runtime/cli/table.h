// Tables the CLI prints: aligned text, or JSON with --json (numbers stay numbers).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::cli {

using json = nlohmann::json;

class Table {
public:
    explicit Table(std::vector<std::string> columns) : columns_(std::move(columns)) {}
    // One row: values in column order (strings or numbers).
    void add(std::vector<json> values);
    json to_json() const;
    void print_text(FILE *out) const;
    size_t size() const { return rows_.size(); }

private:
    std::vector<std::string> columns_;
    std::vector<std::vector<json>> rows_;
};

// A progress bar on stderr, drawn only when stderr is a terminal and the
// work has run for more than a second.
class Progress {
public:
    Progress(std::string label, size_t total);
    ~Progress();
    void step(const std::string &what = "");

private:
    std::string label_;
    size_t total_, done_ = 0;
    double start_;
    bool tty_, drawn_ = false;
};

std::string fmt(double v, int decimals);

// `s` safe for a terminal: control bytes (< 0x20, 0x7f), which a crafted
// file's names and metadata may hold (escape sequences), as \xHH.
std::string printable(const std::string &s);
void write_json(const json &j);  // to stdout, indented

}  // namespace qforge::cli
