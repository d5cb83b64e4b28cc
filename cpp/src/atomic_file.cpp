#include "atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "errors.h"

namespace lseg {

void write_atomically(const std::string& path, const std::string& what, const std::function<void(std::ostream&)>& fill) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError(path + ": cannot write " + what + " (" + std::strerror(errno) + ")");
    fill(out);
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw UserError(path + ": writing " + what + " failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw UserError(path + ": cannot rename the temp file into place (" + reason + ")");
  }
}

}  // namespace lseg
