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
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "errors.h"
#include "image.h"
#include "npy.h"

namespace lseg {
namespace {

constexpr const char* kVersion = "0.1.0";

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

struct Args {
  std::string command;
  std::vector<std::string> aoti, engines, sizes;
  std::string input, output, json;
  std::vector<int> size;
  std::vector<float> mean, std;
  int batch = 1, iterations = 100, warmup = 10, threads = 0, device_index = 0, stream_frames = 50;
  bool verbose = false, pageable = false;
  RunOptions run;
};

[[noreturn]] void usage_error(const std::string& message) {
  throw UserError(message + " (see lseg_cpp --help)");
}

int parse_int(const std::string& flag, const std::string& text, int minimum) {
  try {
    size_t used = 0;
    int v = std::stoi(text, &used);
    if (used != text.size() || v < minimum) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    usage_error(flag + " expects an integer >= " + std::to_string(minimum) + ", got '" + text + "'");
  }
}

float parse_float(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    float v = std::stof(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    usage_error(flag + " expects a number, got '" + text + "'");
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  a.command = argv[1];
  auto is_flag = [](const std::string& s) { return s.rfind("--", 0) == 0; };
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc || is_flag(argv[i + 1])) usage_error(flag + " needs a value");
      return argv[++i];
    };
    auto values = [&]() {
      std::vector<std::string> out;
      while (i + 1 < argc && !is_flag(argv[i + 1])) out.push_back(argv[++i]);
      if (out.empty()) usage_error(flag + " needs at least one value");
      return out;
    };
    if (flag == "--aoti") a.aoti.push_back(value());
    else if (flag == "--engine") a.engines.push_back(value());
    else if (flag == "--sizes") a.sizes = values();
    else if (flag == "--input") a.input = value();
    else if (flag == "--output") a.output = value();
    else if (flag == "--json") a.json = value();
    else if (flag == "--batch") a.batch = parse_int(flag, value(), 1);
    else if (flag == "--iterations") a.iterations = parse_int(flag, value(), 1);
    else if (flag == "--warmup") a.warmup = parse_int(flag, value(), 0);
    else if (flag == "--threads") a.threads = parse_int(flag, value(), 1);
    else if (flag == "--device-index") a.device_index = parse_int(flag, value(), 0);
    else if (flag == "--verbose") a.verbose = true;
    else if (flag == "--no-cuda-graph") a.run.cuda_graph = false;
    else if (flag == "--stream-frames") a.stream_frames = parse_int(flag, value(), 0);
    else if (flag == "--output-dtype") {
      const std::string v = value();
      if (v != "fp32" && v != "fp16") usage_error("--output-dtype expects fp32 or fp16, got '" + v + "'");
      a.run.output_dtype = v == "fp16" ? OutputDtype::kFloat16 : OutputDtype::kFloat32;
    } else if (flag == "--host-buffers") {
      const std::string v = value();
      if (v != "pinned" && v != "pageable") usage_error("--host-buffers expects pinned or pageable, got '" + v + "'");
      a.pageable = v == "pageable";
    }
    else if (flag == "--size") {
      for (const auto& v : values()) a.size.push_back(parse_int(flag, v, 1));
      if (a.size.size() != 2) usage_error("--size expects H W");
    } else if (flag == "--mean" || flag == "--std") {
      auto& dst = flag == "--mean" ? a.mean : a.std;
      for (const auto& v : values()) dst.push_back(parse_float(flag, v));
      if (dst.size() != 3) usage_error(flag + " expects 3 values (R G B)");
    } else {
      usage_error("unknown option '" + flag + "' for " + a.command);
    }
  }
  return a;
}

std::pair<int64_t, int64_t> parse_size(const std::string& text) {
  const size_t x = text.find_first_of("xX");
  const int h = parse_int("--sizes", text.substr(0, x), 1);
  const int w = x == std::string::npos ? h : parse_int("--sizes", text.substr(x + 1), 1);
  return {h, w};
}

std::unique_ptr<Backend> open_backend(const std::string& kind, const std::string& path, const Args& a) {
  auto backend = kind == "aoti" ? open_aoti(path, a.device_index) : open_tensorrt(path, a.device_index, a.verbose);
  backend->configure(a.run);
  return backend;
}

// ------------------------------------------------------------------------------------------- bench
struct Stats {
  double median = 0, mean = 0, std = 0, p90 = 0, min = 0;
};

Stats summarise(std::vector<double> ms) {
  Stats s;
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  s.min = ms.front();
  s.median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  s.p90 = ms[std::min(n - 1, static_cast<size_t>(std::ceil(0.9 * n)) - 1)];
  s.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / n;
  double var = 0;
  for (double v : ms) var += (v - s.mean) * (v - s.mean);
  s.std = n > 1 ? std::sqrt(var / (n - 1)) : 0.0;
  return s;
}

struct BenchRow {
  std::string backend, precision, device, artefact, clock;
  std::vector<int64_t> input_shape;
  Stats device_only, end_to_end;
  bool cuda_graph = false;
  std::string output_dtype, host_buffers;
  std::optional<Stats> stream;  // ms per frame, one sample per stream of --stream-frames frames
  int stream_frames = 0;
};

// Deterministic inputs in [-1, 1] (what a normalised image spans); values do not change the latency.
std::vector<float> make_input(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  uint32_t state = 12345u;
  for (auto& v : x) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
  }
  return x;
}

int64_t numel(const std::vector<int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<int64_t>());
}

BenchRow bench_one(Backend& backend, const std::vector<int64_t>& shape, const Args& a) {
  backend.prepare(shape);
  const std::vector<float> input = make_input(numel(shape));
  // End-to-end buffers: the backend's pinned ones where it has them (the caller fills the input
  // there, as an image decoder would), else the caller's own (pageable) memory.
  const bool pinned = !a.pageable && backend.host_input() != nullptr;
  std::vector<float> own_in = input;
  std::vector<unsigned char> own_out;
  float* host_in = own_in.data();
  void* host_out = nullptr;
  if (pinned) {
    host_in = backend.host_input();
    std::copy(input.begin(), input.end(), host_in);
    host_out = backend.host_output();
  } else {
    own_out.resize(static_cast<size_t>(numel(backend.output_shape())) * element_size(backend.output_dtype()));
    host_out = own_out.data();
  }
  for (int i = 0; i < a.warmup; ++i) {
    backend.upload(host_in);
    backend.run();
    backend.download_to(host_out);
  }
  BenchRow row;
  row.backend = backend.kind();
  row.precision = backend.precision();
  row.device = backend.device();
  row.artefact = backend.artefact();
  row.input_shape = shape;
  row.cuda_graph = backend.uses_cuda_graph();
  row.output_dtype = dtype_name(backend.output_dtype());
  row.host_buffers = pinned ? "pinned" : "pageable";

  auto timer = backend.make_timer();
  row.clock = timer->clock();
  std::vector<double> device_ms, e2e_ms;
  backend.upload(host_in);
  backend.synchronize();
  for (int i = 0; i < a.iterations; ++i) {
    timer->start();
    backend.run();
    timer->stop();
    device_ms.push_back(timer->elapsed_ms());
  }
  for (int i = 0; i < a.iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    backend.upload(host_in);
    backend.run();
    backend.download_to(host_out);
    e2e_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  row.device_only = summarise(device_ms);
  row.end_to_end = summarise(e2e_ms);
  if (a.stream_frames > 0 && backend.stream_ms_per_frame(std::min(a.stream_frames, 5)) >= 0) {  // warm-up
    std::vector<double> per_frame;
    const int streams = std::max(3, a.iterations / a.stream_frames);
    for (int i = 0; i < streams; ++i) per_frame.push_back(backend.stream_ms_per_frame(a.stream_frames));
    row.stream = summarise(per_frame);
    row.stream_frames = a.stream_frames;
  }
  return row;
}

std::string fmt(double v, int precision = 3) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

std::string stats_json(const Stats& s) {
  return "{\"median\": " + fmt(s.median, 5) + ", \"mean\": " + fmt(s.mean, 5) + ", \"std\": " + fmt(s.std, 5) +
         ", \"p90\": " + fmt(s.p90, 5) + ", \"min\": " + fmt(s.min, 5) + "}";
}

void write_json(const std::string& path, const std::vector<BenchRow>& rows, const Args& a) {
  std::ostringstream j;
  j << "{\n  \"schema\": 2,\n  \"tool\": \"lseg_cpp " << kVersion << "\",\n  \"libtorch\": \"" << libtorch_version()
    << "\",\n  \"cuda_build\": " << (cuda_compiled() ? "true" : "false") << ",\n  \"cpu_threads\": " << cpu_threads() << ",\n  \"iterations\": " << a.iterations
    << ",\n  \"warmup\": " << a.warmup << ",\n  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    j << "    {\"backend\": \"" << r.backend << "\", \"precision\": \"" << json_escape(r.precision)
      << "\", \"device\": \"" << json_escape(r.device) << "\", \"artefact\": \"" << json_escape(r.artefact)
      << "\", \"input_shape\": [";
    for (size_t k = 0; k < r.input_shape.size(); ++k) j << (k ? ", " : "") << r.input_shape[k];
    j << "], \"device_clock\": \"" << r.clock << "\", \"cuda_graph\": " << (r.cuda_graph ? "true" : "false")
      << ", \"output_dtype\": \"" << r.output_dtype << "\", \"host_buffers\": \"" << r.host_buffers
      << "\", \"device_only_ms\": " << stats_json(r.device_only) << ", \"end_to_end_ms\": " << stats_json(r.end_to_end)
      << ", \"stream_ms_per_frame\": " << (r.stream ? stats_json(*r.stream) : "null")
      << ", \"stream_frames\": " << r.stream_frames << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  j << "  ]\n}\n";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.str();
    if (!out) throw UserError(path + ": cannot write the JSON results");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw UserError(path + ": cannot rename the JSON into place");
}

int cmd_bench(const Args& a) {
  if (a.aoti.empty() && a.engines.empty()) usage_error("bench needs at least one --aoti or --engine");
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (const auto& s : a.sizes) sizes.push_back(parse_size(s));

  std::vector<std::pair<std::string, std::string>> artefacts;
  for (const auto& p : a.aoti) artefacts.emplace_back("aoti", p);
  for (const auto& p : a.engines) artefacts.emplace_back("tensorrt", p);

  std::vector<BenchRow> rows;
  std::string clock;
  for (const auto& [kind, path] : artefacts) {
    auto backend = open_backend(kind, path, a);
    std::vector<std::vector<int64_t>> shapes;
    if (auto fixed = backend->static_input_shape()) {
      const auto& s = *fixed;
      const bool listed = sizes.empty() || std::any_of(sizes.begin(), sizes.end(), [&](auto hw) {
                            return hw.first == s[2] && hw.second == s[3];
                          });
      if (!listed) {
        throw UserError(path + ": static input " + shape_str(s) + " is not among --sizes; a static artefact "
                        "runs only at its own size");
      }
      shapes.push_back(s);
    } else {
      if (sizes.empty()) usage_error(path + ": a dynamic engine needs --sizes");
      for (auto [h, w] : sizes) shapes.push_back({a.batch, 3, h, w});
    }
    for (const auto& shape : shapes) {
      std::cerr << "bench: " << kind << " " << path << " input " << shape_str(shape) << " ("
                << a.warmup << " warm-up, " << a.iterations << " iterations)" << std::endl;
      rows.push_back(bench_one(*backend, shape, a));
    }
  }

  std::cout << "lseg_cpp bench: libtorch " << libtorch_version() << ", " << a.iterations << " iterations after "
            << a.warmup << " warm-up, CPU threads " << cpu_threads() << "\n";
  std::cout << "device-only: input on the device, output left there; end-to-end: host float32 in -> host "
            << dtype_name(a.run.output_dtype) << " out, one blocking call; stream: ms per frame, copies overlapping "
               "compute\n\n";
  std::cout << std::left << std::setw(11) << "size" << std::setw(16) << "backend" << std::setw(22) << "device"
            << std::setw(30) << "device-only ms (median | mean ± std)" << "   "
            << "end-to-end ms (median | mean ± std)   stream ms/frame (median)   graph  out   host\n";
  for (const auto& r : rows) {
    const std::string size = std::to_string(r.input_shape[2]) + "x" + std::to_string(r.input_shape[3]) +
                             (r.input_shape[0] > 1 ? " b" + std::to_string(r.input_shape[0]) : "");
    auto cell = [](const Stats& s) { return fmt(s.median) + " | " + fmt(s.mean) + " ± " + fmt(s.std); };
    std::cout << std::left << std::setw(11) << size << std::setw(16) << (r.backend + "-" + r.precision)
              << std::setw(22) << r.device << std::setw(37) << cell(r.device_only) << "   " << std::setw(38)
              << cell(r.end_to_end) << std::setw(27) << (r.stream ? fmt(r.stream->median) : std::string("-"))
              << std::setw(7) << (r.cuda_graph ? "yes" : "no") << std::setw(6) << r.output_dtype << r.host_buffers
              << "\n";
  }
  std::cout << std::flush;
  if (!a.json.empty()) {
    write_json(a.json, rows, a);
    std::cerr << "bench: wrote " << a.json << std::endl;
  }
  return 0;
}

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
  backend->download_to(out.data());
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
