#include "qforge/plan.h"

#include <algorithm>
#include <cstdio>

#include "qforge/error.h"
#include "qforge/format.h"

namespace qforge {

namespace {

int parse_int(const std::string &s, const std::string &what, const std::string &text) {
    try {
        size_t used = 0;
        const int v = std::stoi(s, &used);
        if (used == s.size()) return v;
    } catch (...) {
    }
    throw Error("format '" + text + "': " + what + " '" + s + "' is not an integer");
}

}  // namespace

FormatSpec FormatSpec::parse(const std::string &text) {
    FormatSpec f;
    // A trailing "+smooth=A" or "+nosmooth": the layer's SmoothQuant alpha.
    std::string body = text;
    if (const size_t plus = text.find('+'); plus != std::string::npos) {
        body = text.substr(0, plus);
        const std::string opt = text.substr(plus + 1);
        if (opt == "nosmooth") {
            f.smooth = -1;
        } else if (opt.rfind("smooth=", 0) == 0) {
            try {
                size_t used = 0;
                f.smooth = std::stod(opt.substr(7), &used);
                if (used != opt.size() - 7) throw Error("");
            } catch (...) {
                throw Error("format '" + text + "': smooth '" + opt.substr(7) + "' is not a number");
            }
            if (!(f.smooth >= 0 && f.smooth <= 1)) {
                throw Error("format '" + text + "': smooth = " + opt.substr(7) + " is out of range (SmoothQuant's alpha is in [0, 1])");
            }
        } else {
            throw Error("format '" + text + "': '+" + opt + "' is not +smooth=A or +nosmooth");
        }
    }
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t colon = body.find(':', start);
        parts.push_back(body.substr(start, colon - start));
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    const std::string &kind = parts[0];
    // The formats runtime/src/quantize.cpp writes.
    static const Format kQuantizable[] = {Format::q4_k, Format::int4g, Format::int4z, Format::int8, Format::fp8, Format::f16, Format::f32};
    bool known = false;
    for (Format q : kQuantizable) known |= kind == qforge::to_string(q);
    if (!known) throw Error("format '" + text + "' is not one of q4_k, int4g[:G], int4z[:G], int8, fp8, f16, f32");
    f.format = format_from_string(kind);
    if (traits(f.format).separate_scales) {
        f.group_size = parts.size() > 1 ? parse_int(parts[1], "group size", text) : 128;
        f.bits = parts.size() > 2 ? parse_int(parts[2], "bits", text) : 4;
        if (parts.size() > 3) throw Error("format '" + text + "': expected " + kind + "[:G[:bits]]");
        return f;
    }
    if (parts.size() > 1) throw Error("format '" + text + "': only int4g and int4z take parameters");
    return f;
}

std::string FormatSpec::to_string() const {
    const std::string name = qforge::to_string(format);
    std::string s = traits(format).separate_scales ? name + ":" + std::to_string(group_size) : name;
    if (smooth < 0) return s + "+nosmooth";
    if (smooth == smooth) {
        char a[32];
        std::snprintf(a, sizeof a, "%g", smooth);
        s += std::string("+smooth=") + a;
    }
    return s;
}

const char *FormatSpec::method() const {
    switch (format) {
    case Format::f32:
    case Format::f16: return "none (a float copy)";
    case Format::q4_k: return "llama.cpp's Q4_K recipe (weighted least-squares scales and mins)";
    case Format::int4g: return "symmetric round-to-nearest (optional scale search)";
    case Format::int4z: return "asymmetric round-to-nearest (zero points, GPTQ layout)";
    default: return "symmetric round-to-nearest (absmax scale)";
    }
}

bool FormatSpec::symmetric() const { return format != Format::int4z && format != Format::q4_k; }

int FormatSpec::weight_bits() const {
    if (traits(format).separate_scales) return bits;
    if (format == Format::q4_k) return 4;
    if (format == Format::int8 || format == Format::fp8) return 8;
    return format == Format::f16 ? 16 : 32;
}

std::string FormatSpec::granularity() const {
    if (traits(format).separate_scales) return "group of " + std::to_string(group_size);
    if (traits(format).row_head_bytes) return "per channel";
    if (format == Format::q4_k) return "super-block of 256 (sub-blocks of 32)";
    return "none";
}

QuantPlan QuantPlan::parse(const std::string &default_format, const std::vector<std::string> &overrides) {
    QuantPlan p;
    p.default_format = FormatSpec::parse(default_format);
    for (const auto &o : overrides) {
        const size_t eq = o.find('=');  // the first: a format's +smooth=A has one too
        if (eq == std::string::npos || eq == 0) throw Error("override '" + o + "' is not NAME=FORMAT");
        try {
            p.overrides[o.substr(0, eq)] = FormatSpec::parse(o.substr(eq + 1));
        } catch (const Error &e) {
            throw Error("plan: override for layer '" + o.substr(0, eq) + "': " + e.what());
        }
    }
    return p;
}

const FormatSpec &QuantPlan::for_layer(const std::string &name) const {
    auto it = overrides.find(name);
    return it == overrides.end() ? default_format : it->second;
}

void QuantPlan::validate(const std::vector<LayerShape> &layers) const {
    for (const auto &[name, spec] : overrides) {
        bool found = false;
        for (const auto &l : layers) found |= l.name == name;
        if (!found) throw Error("plan: override for layer '" + name + "', but the model has no such layer");
    }
    for (const auto &l : layers) {
        const FormatSpec &f = for_layer(l.name);
        const std::string where = "plan: layer '" + l.name + "' [" + std::to_string(l.out) + ", " + std::to_string(l.in) +
                                  "] as " + f.to_string() + ": ";
        const FormatTraits &t = traits(f.format);
        if (t.separate_scales) {
            if (f.group_size <= 0 || f.group_size % 2 != 0) throw Error(where + "group size must be positive and even");
            if (f.bits != 4) {
                throw Error(where + "bits = " + std::to_string(f.bits) + " is out of range (" + t.name + " is 4-bit)");
            }
            if (l.in % 2 != 0) throw Error(where + "in must be even (two columns per byte)");
            if (t.zero_points) {  // written as a GPTQ checkpoint (qforge/gptq.h), read back by int4z's kernels
                if (std::find(t.group_sizes.begin(), t.group_sizes.end(), f.group_size) == t.group_sizes.end()) {
                    throw Error(where + "group size must be 32, 64 or 128 (int4z's kernels)");
                }
                if (l.out % 8 != 0 || l.in % 8 != 0) throw Error(where + "out and in must be multiples of 8 (GPTQ packs 8 per int32)");
            }
        }
        if (!t.separate_scales && l.in % t.block_elements != 0) {
            throw Error(where + "in must be a multiple of " + std::to_string(t.block_elements) + " (whole " + t.name +
                        " blocks)");
        }
    }
}

}  // namespace qforge
