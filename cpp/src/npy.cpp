#include "npy.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "atomic_file.h"
#include "errors.h"

namespace lseg {

namespace {

const char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

bool host_is_little_endian() {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

// Value text of `'key': value` in the header dict, up to the next top-level comma or brace.
std::string dict_value(const std::string& header, const std::string& key) {
  const std::string quoted_single = "'" + key + "'";
  const std::string quoted_double = "\"" + key + "\"";
  size_t pos = header.find(quoted_single);
  size_t klen = quoted_single.size();
  if (pos == std::string::npos) {
    pos = header.find(quoted_double);
    klen = quoted_double.size();
  }
  if (pos == std::string::npos) return {};
  pos = header.find(':', pos + klen);
  if (pos == std::string::npos) return {};
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos < header.size() && header[pos] == '(') {
    size_t end = header.find(')', pos);
    return end == std::string::npos ? std::string() : header.substr(pos, end - pos + 1);
  }
  size_t end = header.find_first_of(",}", pos);
  std::string value = header.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  while (!value.empty() && value.back() == ' ') value.pop_back();
  if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"')) value = value.substr(1, value.size() - 2);
  return value;
}

std::vector<int64_t> parse_shape(const std::string& tuple, const std::string& path) {
  if (tuple.size() < 2 || tuple.front() != '(' || tuple.back() != ')') {
    throw UserError(path + ": malformed .npy header (no shape tuple)");
  }
  std::vector<int64_t> shape;
  std::stringstream ss(tuple.substr(1, tuple.size() - 2));
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(' ');
    if (a == std::string::npos) continue;  // trailing comma of a 1-tuple
    try {
      size_t used = 0;
      long long v = std::stoll(item.substr(a), &used);
      if (v < 0) throw std::invalid_argument("negative");
      shape.push_back(v);
    } catch (const std::exception&) {
      throw UserError(path + ": malformed .npy header (bad shape " + tuple + ")");
    }
  }
  return shape;
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

NpyArray read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open (" + std::strerror(errno) + ")");
  char preamble[kMagicLen + 2];
  if (!in.read(preamble, sizeof(preamble)) || std::memcmp(preamble, kMagic, kMagicLen) != 0) {
    throw UserError(path + ": not a .npy file (no \\x93NUMPY magic)");
  }
  const int major = static_cast<unsigned char>(preamble[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) throw UserError(path + ": truncated .npy header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) throw UserError(path + ": truncated .npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    throw UserError(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > (1u << 20)) throw UserError(path + ": implausible .npy header length");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw UserError(path + ": truncated .npy header");

  const std::string descr = dict_value(header, "descr");
  if (descr != "<f4" && !(descr == "=f4" && host_is_little_endian())) {
    throw UserError(path + ": dtype " + (descr.empty() ? "?" : descr) +
                    ", expected little-endian float32 '<f4' (use x.astype(np.float32))");
  }
  if (dict_value(header, "fortran_order") != "False") {
    throw UserError(path + ": Fortran-order array; save a C-order one (np.ascontiguousarray)");
  }
  if (!host_is_little_endian()) throw UserError("this host is big-endian; lseg_cpp reads little-endian .npy only");

  NpyArray arr;
  arr.shape = parse_shape(dict_value(header, "shape"), path);
  const int64_t n = arr.numel();
  arr.data.resize(static_cast<size_t>(n));
  if (n > 0 && !in.read(reinterpret_cast<char*>(arr.data.data()), n * static_cast<int64_t>(sizeof(float)))) {
    throw UserError(path + ": truncated data (header says " + shape_str(arr.shape) + " float32)");
  }
  char extra;
  if (in.read(&extra, 1)) {
    throw UserError(path + ": trailing bytes after the data of shape " + shape_str(arr.shape) + " (corrupt?)");
  }
  return arr;
}

namespace {

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const void* data, const char* descr,
               int64_t item_size) {
  if (!host_is_little_endian()) throw UserError("this host is big-endian; lseg_cpp writes little-endian .npy only");
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                       shape_str(shape) + ", }";
  // Version 1.0: magic(6) + version(2) + len(2) + header, padded with spaces to a multiple of 64 and
  // terminated by '\n', so that the data is aligned.
  const size_t unpadded = kMagicLen + 2 + 2 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  if (header.size() > 65535) throw UserError(path + ": shape too large for a .npy v1 header");

  int64_t n = 1;
  for (int64_t d : shape) n *= d;

  write_atomically(path, "the array", [&](std::ostream& out) {
    out.write(kMagic, kMagicLen);
    const char version[2] = {1, 0};
    out.write(version, 2);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(len), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(data), n * item_size);
  });
}

}  // namespace

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  write_npy(path, shape, data, "<f4", sizeof(float));
}

void write_npy_f16(const std::string& path, const std::vector<int64_t>& shape, const void* data) {
  write_npy(path, shape, data, "<f2", 2);
}

}  // namespace lseg
