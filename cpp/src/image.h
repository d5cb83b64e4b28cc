// Image input for `extract`, available only when CMake found OpenCV (LSEG_WITH_OPENCV).
#pragma once

#include <array>
#include <string>
#include <vector>

namespace lseg {

// Decode `path`, convert to RGB, resize to (height, width) ignoring the aspect ratio (area filter
// when shrinking, bilinear when enlarging, as the Python preprocessing does with Pillow), scale to
// [0, 1] and normalise with mean[0..2] / std[3..5]. Returns (1, 3, height, width) float32 in NCHW.
// Throws UserError (also when OpenCV is not compiled in).
std::vector<float> load_image_nchw(const std::string& path, int height, int width,
                                   const std::array<float, 6>& mean_std);

}  // namespace lseg
