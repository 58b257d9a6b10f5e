// The one exception type qforge throws: the message names the tensor, the
// shape, the layer or the byte offset that is wrong.
#pragma once

#include <stdexcept>

namespace qforge {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace qforge
