// lseg_cpp: LSeg image-encoder latency and feature extraction without Python.
//
//   lseg_cpp bench   (--aoti X.pt2 | --engine X.trt)... [--sizes S...] [--batch B] [--iterations N]
//                    [--warmup N] [--threads N] [--device-index I] [--json OUT.json] [--no-cuda-graph]
//                    [--output-dtype fp32|fp16] [--host-buffers pinned|pageable] [--stream-frames N]
//   lseg_cpp extract (--aoti X.pt2 | --engine X.trt) --input X.npy|IMAGE --output F.npy [--size H W]
//                    [--no-cuda-graph] [--output-dtype fp32|fp16]
//   lseg_cpp info
//
// Input errors print one "lseg_cpp: error: ..." line on stderr and exit 2; usage errors exit 2 too.
#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "backend.h"
#include "cli.h"
#include "errors.h"
#include "image.h"
#include "npy.h"

namespace lseg {
namespace {

const char* kUsage = R"(usage:
  lseg_cpp bench   (--aoti X.pt2 | --engine X.trt)... [--sizes S [S ...]] [--batch B]
                   [--iterations N] [--warmup N] [--threads N] [--device-index I]
                   [--json OUT.json] [--verbose] [--no-cuda-graph] [--output-dtype fp32|fp16]
                   [--host-buffers pinned|pageable] [--stream-frames N]
  lseg_cpp extract (--aoti X.pt2 | --engine X.trt) --input X.npy|IMAGE --output FEATURES.npy
                   [--size H W] [--mean M M M --std S S S] [--threads N] [--device-index I]
                   [--no-cuda-graph] [--output-dtype fp32|fp16]
  lseg_cpp info
  lseg_cpp --version | --help

bench    latency per artefact and size: device-only (input resident on the device, output left
         there; CUDA events on GPU, steady_clock on CPU) and end-to-end (one blocking call: host
         float32 in, host features out in --output-dtype, copies included; steady_clock). On CUDA
         (AOTI, CUDA build) end-to-end goes through the backend's pinned host buffers unless
         --host-buffers pageable, and a "stream" mode pipelines --stream-frames frames (copy of
         frame i overlapping compute of frame i+1; 0 turns it off). Prints median and mean +- std.
         AOTI packages are static: they run at their own size, and --sizes (N or HxW) must include
         it if given. Dynamic TensorRT engines run at every --sizes entry.
extract  features of one input: a (B,3,H,W) float32 .npy (already normalised), or an image file
         when built with OpenCV (resized to --size or the package's size, normalised with the
         package's mean/std or --mean/--std). Writes (B, 512, h, w) .npy, float32 or (with
         --output-dtype fp16) float16.
--no-cuda-graph     AOTI on CUDA: call the package each time instead of replaying a CUDA graph of
                    one call (the default; captured after two warm-up calls).
--output-dtype D    fp32 (default) or fp16: features cast on the device before the copy to the host.
)";

// ----------------------------------------------------------------------------------------- extract
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int cmd_extract(const Args& a) {
  if (a.aoti.size() + a.engines.size() != 1) usage_error("extract needs exactly one --aoti or --engine");
  if (a.input.empty()) usage_error("extract needs --input");
  if (a.output.empty()) usage_error("extract needs --output");
  if (!ends_with(a.output, ".npy")) usage_error("--output must end in .npy");
  if (!std::ifstream(a.input)) throw UserError(a.input + ": input file not found or not readable");

  auto backend = a.aoti.empty() ? open_backend("tensorrt", a.engines[0], a) : open_backend("aoti", a.aoti[0], a);
  std::vector<int64_t> shape;
  std::vector<float> data;
  if (ends_with(a.input, ".npy")) {
    NpyArray arr = read_npy_f32(a.input);
    if (arr.shape.size() != 4 || arr.shape[1] != 3) {
      throw UserError(a.input + ": shape " + shape_str(arr.shape) + ", expected a (B,3,H,W) float32 image batch");
    }
    shape = arr.shape;
    data = std::move(arr.data);
  } else {
    int h = 0, w = 0;
    if (a.size.size() == 2) {
      h = a.size[0];
      w = a.size[1];
    } else if (auto fixed = backend->static_input_shape()) {
      h = static_cast<int>((*fixed)[2]);
      w = static_cast<int>((*fixed)[3]);
    } else {
      usage_error("image input to a dynamic engine needs --size H W");
    }
    std::array<float, 6> ms{0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    if (auto stored = backend->mean_std()) ms = *stored;
    if (!a.mean.empty()) std::copy(a.mean.begin(), a.mean.end(), ms.begin());
    if (!a.std.empty()) std::copy(a.std.begin(), a.std.end(), ms.begin() + 3);
    data = load_image_nchw(a.input, h, w, ms);
    shape = {1, 3, h, w};
  }
  backend->prepare(shape);
  const OutputDtype dtype = backend->output_dtype();
  std::vector<unsigned char> out(static_cast<size_t>(numel(backend->output_shape())) * element_size(dtype));
  backend->upload(data.data());
  backend->run();
  backend->download(out.data());
  if (dtype == OutputDtype::kFloat16) {
    write_npy_f16(a.output, backend->output_shape(), out.data());
  } else {
    write_npy_f32(a.output, backend->output_shape(), reinterpret_cast<const float*>(out.data()));
  }
  std::cerr << "wrote " << a.output << ": " << shape_str(backend->output_shape())
            << (dtype == OutputDtype::kFloat16 ? " float16" : " float32") << " from " << backend->kind() << "-"
            << backend->precision() << " on " << backend->device()
            << (backend->uses_cuda_graph() ? " (CUDA graph)" : "") << std::endl;
  return 0;
}

int cmd_info() {
  std::cout << "lseg_cpp " << kVersion << "\n"
            << "libtorch " << libtorch_version() << "\n"
            << "backends: aoti" << (tensorrt_compiled() ? " tensorrt" : "") << "\n"
            << "cuda: " << (cuda_compiled() ? "compiled (CUDA graphs, pinned buffers, stream mode)"
                                            : "not compiled (libtorch without CUDA)") << "\n"
            << "tensorrt: " << (tensorrt_compiled() ? "compiled" : "not compiled (TensorRT not found by CMake)") << "\n"
            << "opencv: " << (opencv_compiled() ? "compiled" : "not compiled (raw .npy input only)") << "\n";
  return 0;
}

}  // namespace
}  // namespace lseg

int main(int argc, char** argv) {
  using namespace lseg;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::cout << "lseg_cpp " << kVersion << " (libtorch " << libtorch_version() << ")\n";
    return 0;
  }
  try {
    const Args a = parse_args(argc, argv);
    if (a.threads > 0) set_cpu_threads(a.threads);
    if (a.command == "bench") return cmd_bench(a);
    if (a.command == "extract") return cmd_extract(a);
    if (a.command == "info") return cmd_info();
    usage_error("unknown command '" + a.command + "'");
  } catch (const UserError& e) {
    std::cerr << "lseg_cpp: error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lseg_cpp: internal error: " << first_line(e.what()) << std::endl;
    return 1;
  }
}
