// Dequantizes a raw tensor of one GGUF block format with the reference and
// with every dequant variant of that format this CPU runs; writes each
// result as raw f32 for the gguf-py oracle (test_dequant.py).
// usage: qforge_dequant_dump FORMAT IN.bin OUT_ROWS IN_COLS OUT_DIR
#include "qforge/kernels.h"
#include "reference.h"
#include "registry.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

static void write(const std::string &path, const std::vector<float> &v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char *>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    if (!f) throw std::runtime_error("cannot write " + path);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        std::cerr << "usage: " << argv[0] << " FORMAT IN.bin OUT_ROWS IN_COLS OUT_DIR\n";
        return 2;
    }
    try {
        const qforge::Format format = qforge::format_from_string(argv[1]);
        std::ifstream f(argv[2], std::ios::binary);
        std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const int64_t out = std::stoll(argv[3]), in = std::stoll(argv[4]);
        const std::string dir = argv[5];
        const int64_t bytes = qforge::weight_bytes(format, out, in);
        if (static_cast<int64_t>(data.size()) != bytes) {
            std::cerr << argv[2] << ": " << data.size() << " bytes, expected " << bytes << "\n";
            return 2;
        }
        std::vector<float> w(out * in);
        qforge::ref::block_dequant(format, data.data(), out, in, w.data());
        write(dir + "/reference.f32", w);
        qforge::internal::KernelKey key;
        key.format = format;
        key.op = qforge::internal::Op::dequant;
        for (const auto *v : qforge::internal::runnable_variants(*qforge::internal::find_row(key))) {
            qforge::RunOptions o;
            o.target = v->target;
            qforge::dequant(qforge::Weights{format, data.data(), out, in}, qforge::Matrix{w.data(), out, in}, o);
            write(dir + "/" + v->target + ".f32", w);
            std::cout << v->target << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
