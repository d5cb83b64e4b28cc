// Minimal .npy reader/writer for little-endian float32, C-order arrays (format versions 1-3); the
// writer also does float16 (extract --output-dtype fp16).
//
// Our own code on purpose: the format is a 10-byte preamble, a Python-dict header and raw data, and
// the only arrays lseg_cpp exchanges are float32 images and features. Anything else (float64,
// Fortran order, big-endian, truncated data) is refused with a message that says how to convert.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lseg {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;

  int64_t numel() const;
};

// Throws UserError with "<path>: <reason>".
NpyArray read_npy_f32(const std::string& path);

// Writes atomically (temp file in the same folder, then rename). Throws UserError.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
// Same, for IEEE half-precision values (descr '<f2'; `data` holds their 16-bit patterns).
void write_npy_f16(const std::string& path, const std::vector<int64_t>& shape, const void* data);

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace lseg
