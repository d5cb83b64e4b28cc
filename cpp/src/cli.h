// Command-line options shared by lseg_cpp's commands: parsed once in main.cpp, read by bench.cpp
// and the extract command. Usage errors are UserErrors (one "lseg_cpp: error:" line, exit 2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"

namespace lseg {

inline constexpr const char* kVersion = "0.1.0";

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

[[noreturn]] void usage_error(const std::string& message);
Args parse_args(int argc, char** argv);
std::pair<int64_t, int64_t> parse_size(const std::string& text);  // "N" or "HxW"
std::unique_ptr<Backend> open_backend(const std::string& kind, const std::string& path, const Args& a);
int64_t numel(const std::vector<int64_t>& shape);

int cmd_bench(const Args& a);  // bench.cpp

}  // namespace lseg
