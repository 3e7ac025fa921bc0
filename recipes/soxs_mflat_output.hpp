// Output safety of the soxs_mflat plugin. Products are saved into a staging directory in the working
// directory and renamed to their final names only when every one is complete; esorex then signs them and
// moves them to --output-dir. A failure, a full disk or a kill so never leaves a truncated product under
// its final name. The working directory and the output directory (--output-dir, ESOREX_OUTPUT_DIR or
// esorex's configuration file) are locked with the lock file of the Python front end
// (data/contract/products.yaml) until the plugin is destroyed, i.e. after esorex moved the products, and
// the free space of both is checked against the products' size before any processing.
#pragma once
#include <cpl.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace soxs_cpl {

struct OutputError : std::runtime_error {
  cpl_error_code code;
  OutputError(cpl_error_code c, const std::string& m) : std::runtime_error(m), code(c) {}
};

// The directory esorex moves the products to: its --output-dir option, else ESOREX_OUTPUT_DIR, else
// esorex.caller.output-dir of its configuration file (--config, ESOREX_CONFIG, ~/.esorex/esorex.rc),
// else "." (also when the process is not esorex, e.g. python-cpl).
std::string esorex_output_dir();
// The SOF files esorex was given (the arguments after the recipe's name that are no options); none when the
// process is not esorex.
std::vector<std::string> esorex_sof_files();

// An fcntl lock on <dir>/<lock file> (non-blocking; the file is removed on release, so the inode is
// re-checked after locking).
struct DirLock {
  std::string dir;
  int fd = -1;
  void take(const std::string& directory, const std::string& what);
  void release();
};

struct Staging {
  std::string dir;                 // "<name>/" in the working directory once created
  std::vector<DirLock> locks;      // the working directory, and the output directory if another
  std::vector<std::string> names;  // the products' file names

  // Lock the working and output directories, remove staging directories left there by a killed run (the lock
  // says no live run owns them), check their free space, create the staging directory. `products`: the file
  // names the run may write, removed (staged or committed) when SIGINT, SIGTERM or SIGHUP ends the process.
  void open(double need_bytes, const std::vector<std::string>& products);
  // Rename every product frame pointing into the staging directory to its final name.
  void commit(cpl_frameset* frames);
  // Remove the staging directory and the product frames pointing into it (the locks stay).
  void release(cpl_frameset* frames = nullptr);
  void unlock();                   // at the plugin's destroy: after esorex moved the products
};

}  // namespace soxs_cpl
