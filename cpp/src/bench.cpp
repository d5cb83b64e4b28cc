// lseg_cpp bench: device-only, end-to-end and stream latency per artefact and size (see the usage
// text in main.cpp); prints the table and writes the JSON.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "atomic_file.h"
#include "backend.h"
#include "cli.h"
#include "errors.h"
#include "npy.h"  // shape_str

namespace lseg {
namespace {

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
    backend.download(host_out);
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
    backend.download(host_out);
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
  write_atomically(path, "the JSON results", [&](std::ostream& out) { out << j.str(); });
}

}  // namespace

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


}  // namespace lseg
