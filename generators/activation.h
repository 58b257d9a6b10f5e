// The activations of a transformer's FFN, as Halide expressions on f32:
// one definition for the gated-activation kernel (glu.cpp) and, later, for
// the matmul epilogues. Each vectorizes (Halide's exp and erf are
// polynomial; its tanh is a scalar libm call, so GELU's tanh form is
// written through exp):
//   silu(x)      = x / (1 + e^-x)
//   gelu_tanh(x) = x / 2 (1 + tanh(u)) = x / (1 + e^-2u),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu_erf(x)  = x / 2 (1 + erf(x / sqrt(2)))
// Kinds are numbered as qforge::Activation (runtime/include/qforge/kernels.h).
#pragma once

#include "Halide.h"

namespace qforge {

enum class ActivationKind { silu = 0, gelu_tanh = 1, gelu_erf = 2 };
constexpr int kActivationKinds = 3;

inline Halide::Expr activation(ActivationKind kind, const Halide::Expr &x) {
    using Halide::exp;
    switch (kind) {
    case ActivationKind::silu: return x / (1.0f + exp(-x));
    case ActivationKind::gelu_tanh: {
        Halide::Expr u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return x / (1.0f + exp(-2.0f * u));
    }
    case ActivationKind::gelu_erf: return 0.5f * x * (1.0f + Halide::erf(x * 0.7071067811865476f));
    }
    return x;
}

// The activation chosen at run time (an ActivationKind as an int), for
// kernels that would rather not be compiled three times: SiLU and GELU's
// tanh form share one exp, GELU's erf form is selected over them.
inline Halide::Expr activation(const Halide::Expr &kind, const Halide::Expr &x) {
    Halide::Expr u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    Halide::Expr s = Halide::select(kind == static_cast<int>(ActivationKind::gelu_tanh), 2.0f * u, x);
    return Halide::select(kind == static_cast<int>(ActivationKind::gelu_erf), activation(ActivationKind::gelu_erf, x),
                          x / (1.0f + Halide::exp(-s)));
}

}  // namespace qforge
