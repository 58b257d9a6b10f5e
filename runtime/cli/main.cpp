// qforge: the command-line tool. `qforge` alone runs the demo.
// Exit codes: 0 success, 1 an error in the input or the run (message on
// stderr, no output file left behind), 2 a usage error.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "commands.h"
#include "table.h"
#include "qforge/error.h"

int main(int argc, char **argv) {
    using namespace qforge::cli;
    CLI::App app{"qforge: 4-bit quantized matmul kernels, layers and tools"};
    app.require_subcommand(0, 1);
    Common common;
    auto json_flag = [&](CLI::App *sub) { sub->add_flag("--json", common.json, "print JSON instead of a table"); };

    auto *demo_cmd = app.add_subcommand("demo", "the built-in workload: Llama-3.1-8B and 3.2-1B layers, Q4_K and int4g");
    json_flag(demo_cmd);

    std::string file, tensor, out;
    auto *inspect_cmd = app.add_subcommand("inspect", "metadata and tensor table of a GGUF or safetensors file");
    inspect_cmd->add_option("FILE", file, "model file")->required();
    json_flag(inspect_cmd);

    auto *dequant_cmd = app.add_subcommand("dequant", "a tensor as raw little-endian f32, row-major [out, in]");
    dequant_cmd->add_option("FILE", file, "model file")->required();
    dequant_cmd->add_option("--tensor", tensor, "tensor name (int4g: the prefix)")->required();
    dequant_cmd->add_option("-o,--output", out, "output file")->required();

    MatmulArgs mm;
    auto *matmul_cmd = app.add_subcommand("matmul", "Y = X W^T (+ bias), raw f32 in and out");
    matmul_cmd->add_option("FILE", mm.file, "model file")->required();
    matmul_cmd->add_option("--tensor", mm.tensor, "weight tensor (int4g: the prefix)")->required();
    matmul_cmd->add_option("--input", mm.input, "X: raw f32 [tokens, in]")->required();
    matmul_cmd->add_option("--tokens", mm.tokens, "rows of X")->required();
    matmul_cmd->add_option("-o,--output", mm.output, "Y: raw f32 [tokens, out]")->required();
    matmul_cmd->add_option("--activations", mm.activations, "f32, q8 or auto")->check(CLI::IsMember({"f32", "q8", "auto"}));
    matmul_cmd->add_option("--target", mm.target, "a target from `qforge targets`, or auto");

    QuantizeArgs qa;
    auto *quantize_cmd = app.add_subcommand("quantize", "f32/f16/bf16 GGUF or safetensors -> Q4_K (GGUF), or int4g, int4z, int8, fp8 (safetensors)");
    quantize_cmd->add_option("IN", qa.input, "input model file")->required();
    quantize_cmd->add_option("-o,--output", qa.output, "output file")->required();
    quantize_cmd->add_option("--to", qa.to, "q4_k, int4g[:G], int4z[:G], int8, fp8, f16, f32, each optionally +smooth=A or +nosmooth (default format)")->required();
    quantize_cmd->add_option("--override", qa.overrides, "NAME=FORMAT for one layer (repeatable)");
    quantize_cmd->add_flag("--no-search", qa.no_search, "int4g: plain symmetric scales, no error-minimising search");
    quantize_cmd->add_option("--act-scales", qa.act_scales,
                             "SmoothQuant: a safetensors/GGUF file of per-channel activation maxima ([in] per layer), folded "
                             "into the weights and the norm before them");
    quantize_cmd->add_option("--alpha", qa.alpha, "SmoothQuant's alpha (default 0.5; per layer: FORMAT+smooth=A, +nosmooth)")
        ->check(CLI::Range(0.0, 1.0));
    json_flag(quantize_cmd);

    BenchArgs ba;
    auto *bench_cmd = app.add_subcommand("bench", "every linear layer of a model file, timed");
    bench_cmd->add_option("FILE", ba.file, "model file")->required();
    bench_cmd->add_option("--tokens", ba.tokens, "token counts, e.g. 1,32,512")->delimiter(',');
    bench_cmd->add_option("--threads", ba.threads, "worker threads (default: one per core)");
    json_flag(bench_cmd);

    PackArgs pa;
    auto *pack_cmd = app.add_subcommand("pack", "a GGUF or int4g safetensors file -> a GGUF with its linear weights packed "
                                                "for one CPU family's kernels (mapped as is at load)");
    pack_cmd->add_option("IN", pa.input, "input model file")->required();
    pack_cmd->add_option("-o,--output", pa.output, "output GGUF file")->required();
    pack_cmd->add_option("--target", pa.target, "a CPU family (x86, arm64) or target name, or auto (this CPU)");
    json_flag(pack_cmd);

    BlockArgs bl;
    auto *block_cmd = app.add_subcommand("block", "one decoder block built from the file's metadata (GGUF keys or the "
                                                  "config.json beside a safetensors file), its pieces timed");
    block_cmd->add_option("FILE", bl.file, "model file, or a sharded checkpoint's model.safetensors.index.json")->required();
    block_cmd->add_option("--index", bl.index, "block number (default 0)");
    block_cmd->add_option("--tokens", bl.tokens, "token counts, e.g. 1,32")->delimiter(',');
    block_cmd->add_option("--threads", bl.threads, "worker threads (default: one per core)");
    json_flag(block_cmd);

    auto *targets_cmd = app.add_subcommand("targets", "built-in kernel variants and which one this CPU runs");
    json_flag(targets_cmd);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        app.exit(e);
        return 2;
    }
    try {
        if (*inspect_cmd) return inspect(file, common);
        if (*dequant_cmd) return dequant(file, tensor, out);
        if (*matmul_cmd) return matmul(mm);
        if (*quantize_cmd) return quantize(qa, common);
        if (*bench_cmd) return bench(ba, common);
        if (*pack_cmd) return pack(pa, common);
        if (*block_cmd) return block(bl, common);
        if (*targets_cmd) return targets(common);
        return demo(common);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "qforge: error: %s\n", printable(e.what()).c_str());
        return 1;
    }
}
