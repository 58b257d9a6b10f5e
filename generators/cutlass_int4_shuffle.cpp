// int4g weights into the layout CUTLASS's sm_90 mixed-input GEMM reads
// (FORMATS.md, "CUTLASS int4 (sm_90)"): signed nibbles (q - 8, which is
// q ^ 8 in four bits), placed so that the 16 a thread feeds one wgmma are
// one 64-bit load, and the scales transposed to [groups][out] (CUTLASS
// wants them out-major). A gather: each output byte finds its two nibbles.
// Rows (out) and columns (in) are multiples of 16: the runtime checks.
#include "common.h"

namespace qforge {

class CutlassInt4Shuffle : public KernelGenerator<CutlassInt4Shuffle> {
public:
    Input<Buffer<uint8_t, 2>> weight{"weight"};    // [in/2, out], the int4g plane
    Input<Buffer<uint16_t, 2>> scales{"scales"};   // f16 bits, [n_groups, out]
    Output<Buffer<uint8_t, 2>> shuffled{"shuffled"};   // [in/2, out]: byte b = c + in/2 * r
    Output<Buffer<uint16_t, 2>> scales_t{"scales_t"};  // [out, n_groups]

    void generate() {
        DequantFuncs w, s;
        Expr half_in = weight.dim(0).extent();
        Expr rows = weight.dim(1).extent();
        // Element o = 2b (low nibble) of the layout; element 2b + 1 is the
        // same column 8 rows down. The layout tiles 16 x 16 atoms, rows'
        // atoms first, then columns'; within an atom an element's offset
        // bits are (row % 8) << 5 | (column / 8) << 1 | (column % 2) << 2 |
        // (column / 2 % 4) << 3 | row / 8, which cute::tile_to_shape of
        // compute_memory_reordering_atom<half_t, _1, (2,4):(4,1)> gives.
        Expr o = 2 * (cast<int32_t>(w.c) + half_in * w.r);
        Expr a = o % 256, tile = o / 256, row_tiles = rows / 16;
        Expr m = (tile % row_tiles) * 16 + (a >> 5);
        Expr k = (tile / row_tiles) * 16 + ((a >> 2) & 1) + 2 * ((a >> 3) & 3) + 8 * ((a >> 1) & 1);
        auto nibble = [&](Expr row) {
            Expr byte = weight(clamp(k / 2, 0, half_in - 1), clamp(row, 0, rows - 1));
            return ((byte >> cast<uint8_t>(4 * (k % 2))) & cast<uint8_t>(15)) ^ cast<uint8_t>(8);
        };
        shuffled(w.c, w.r) = nibble(m) | (nibble(m + 8) << cast<uint8_t>(4));
        w.out = shuffled;
        scales_t(s.c, s.r) = scales(s.r, s.c);
        s.out = scales_t;
        schedule_family_for(get_target()).dequant(w, get_target(), knobs());
        schedule_family_for(get_target()).dequant(s, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::CutlassInt4Shuffle, cutlass_int4_shuffle)
