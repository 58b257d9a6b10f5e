// Dequantizes a raw Q4_K tensor with the reference and with every q4k_dequant
// variant this CPU runs; writes each result as raw f32 for the gguf-py oracle.
// usage: qforge_dequant_dump IN.bin OUT IN OUT_DIR
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
    if (argc != 5) {
        std::cerr << "usage: " << argv[0] << " IN.bin OUT_ROWS IN_COLS OUT_DIR\n";
        return 2;
    }
    try {
        std::ifstream f(argv[1], std::ios::binary);
        std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const int64_t out = std::stoll(argv[2]), in = std::stoll(argv[3]);
        const std::string dir = argv[4];
        if (static_cast<int64_t>(data.size()) != out * (in / 256) * 144) {
            std::cerr << argv[1] << ": " << data.size() << " bytes, expected " << out * (in / 256) * 144 << "\n";
            return 2;
        }
        std::vector<float> w(out * in);
        qforge::ref::q4k_dequant(data.data(), out, in, w.data());
        write(dir + "/reference.f32", w);
        qforge::internal::KernelKey key;
        key.format = qforge::Format::q4_k;
        key.op = qforge::internal::Op::dequant;
        for (const auto *v : qforge::internal::runnable_variants(*qforge::internal::find_row(key))) {
            qforge::RunOptions o;
            o.target = v->target;
            qforge::dequant(qforge::Weights{qforge::Format::q4_k, data.data(), out, in}, qforge::Matrix{w.data(), out, in}, o);
            write(dir + "/" + v->target + ".f32", w);
            std::cout << v->target << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
