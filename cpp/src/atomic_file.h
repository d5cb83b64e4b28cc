// Atomic file writes for lseg_cpp (the C++ side of store/atomic.py's rule): the bytes go to a temp
// file beside the target, named with this process's pid, which is renamed onto the target only once
// completely written and flushed. Every failure removes the temp, so no partial file is ever left
// under either name.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace lseg {

// Writes what `fill` streams to `path`, atomically. `what` names the content in the error lines
// ("the array", "the JSON results"). Throws UserError: cannot create, write failed, cannot rename.
void write_atomically(const std::string& path, const std::string& what, const std::function<void(std::ostream&)>& fill);

}  // namespace lseg
