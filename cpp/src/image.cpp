#include "image.h"

#include "backend.h"
#include "errors.h"

#ifdef LSEG_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace lseg {

#ifdef LSEG_WITH_OPENCV

std::vector<float> load_image_nchw(const std::string& path, int height, int width,
                                   const std::array<float, 6>& mean_std) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty()) throw UserError(path + ": cannot read or decode the image (missing file or unknown format)");
  cv::Mat rgb, resized;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  const bool shrinking = width < rgb.cols || height < rgb.rows;
  cv::resize(rgb, resized, cv::Size(width, height), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
  std::vector<float> out(3 * plane);
  for (int y = 0; y < height; ++y) {
    const cv::Vec3b* row = resized.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        out[c * plane + static_cast<size_t>(y) * width + x] =
            (row[x][c] / 255.0f - mean_std[c]) / mean_std[3 + c];
      }
    }
  }
  return out;
}

bool opencv_compiled() { return true; }

#else

std::vector<float> load_image_nchw(const std::string& path, int, int, const std::array<float, 6>&) {
  throw UserError(path + ": image input needs OpenCV, and this lseg_cpp was built without it; pass a "
                  "(1,3,H,W) float32 .npy (normalised) instead, or install OpenCV and rebuild");
}

bool opencv_compiled() { return false; }

#endif

}  // namespace lseg
