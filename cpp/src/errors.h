// Errors caused by the user's input (a file, a shape, a flag). main() prints them as one
// "lseg_cpp: error: ..." line on stderr and exits with status 2; anything else is a bug and exits 1.
#pragma once

#include <stdexcept>
#include <string>

namespace lseg {

struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// First line of a (possibly multi-line, traceback-carrying) library message, shortened.
inline std::string first_line(const std::string& text, size_t limit = 300) {
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "(no message)";
  size_t end = text.find('\n', start);
  std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (line.size() > limit) line = line.substr(0, limit) + "...";
  return line;
}

}  // namespace lseg
