// Option parsing for lseg_cpp (see cli.h).
#include "cli.h"

#include <numeric>
#include <stdexcept>

#include "errors.h"

namespace lseg {

[[noreturn]] void usage_error(const std::string& message) {
  throw UserError(message + " (see lseg_cpp --help)");
}

namespace {

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

}  // namespace

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

int64_t numel(const std::vector<int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<int64_t>());
}

}  // namespace lseg
