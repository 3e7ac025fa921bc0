// Output safety of the soxs_mflat plugin (soxs_mflat_output.hpp).
#include "soxs_mflat_output.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <csignal>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "soxs_mflat_generated.h"

namespace soxs_cpl {
namespace {

std::vector<std::string> cmdline() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t at = 0; at < raw.size();) {
    const size_t end = raw.find('\0', at);
    args.push_back(raw.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return args;
}

// esorex's own option `name` (before the recipe name): "--name=V" or "--name V"; "" when absent.
std::string option(const std::vector<std::string>& args, const std::string& name) {
  const std::string flag = "--" + name;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) break;   // the recipe name: its own options follow
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
    if (a == flag && i + 1 < args.size()) return args[i + 1];
  }
  return "";
}

std::string config_value(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line, value;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#' || line.compare(b, key.size(), key) != 0) continue;
    const size_t eq = line.find('=', b + key.size());
    if (eq == std::string::npos || line.find_first_not_of(" \t", b + key.size()) != eq) continue;
    value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r") + 1);
  }
  return value;
}

std::string lock_path(const std::string& dir) { return dir + "/" + soxs_gen::LOCK_FILE; }

void check_space(const std::string& dir, const std::string& what, double need) {
  struct statvfs v;
  if (statvfs(dir.c_str(), &v) != 0) return;
  const double free_b = double(v.f_bavail) * double(v.f_frsize);
  if (need > free_b)
    throw OutputError(CPL_ERROR_FILE_NOT_CREATED, "not enough free space in the " + what + " " + dir +
                      " for the products (need about " + std::to_string(need / 1e6) + " MB, " +
                      std::to_string(free_b / 1e6) + " MB free)");
}

bool same_dir(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// What a signal handler removes when SIGINT, SIGTERM or SIGHUP ends the run: the staged products and the staging
// directory, products already renamed to their final names (in the working directory, or moved by esorex into
// the output directory) recognised by their inode, and the lock files. Fixed buffers filled before the handler
// is installed: the handler only calls async-signal-safe functions (stat, unlink, rmdir, sigaction, raise).
constexpr int kMaxPaths = 64;
struct SignalPaths {
  char staged[kMaxPaths][PATH_MAX];     // staging/<name>
  char finals[kMaxPaths][PATH_MAX];     // ./<name> and <output dir>/<name>, removed if their inode is ours
  volatile ino_t inode[kMaxPaths];      // 0 until the product is committed
  volatile dev_t device[kMaxPaths];
  char final_of[kMaxPaths];             // finals[k] -> the product index
  char staging[PATH_MAX];
  char locks[2][PATH_MAX];
  volatile sig_atomic_t n_staged = 0, n_finals = 0, n_locks = 0, armed = 0;
};
SignalPaths g_sig;
struct sigaction g_old[3];
const int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};

void on_signal(int sig) {
  if (g_sig.armed) {
    for (int k = 0; k < g_sig.n_staged; ++k) ::unlink(g_sig.staged[k]);
    if (g_sig.staging[0]) ::rmdir(g_sig.staging);
    for (int k = 0; k < g_sig.n_finals; ++k) {
      const int p = g_sig.final_of[k];
      struct stat st;
      if (g_sig.inode[p] && ::stat(g_sig.finals[k], &st) == 0 && st.st_ino == g_sig.inode[p] &&
          st.st_dev == g_sig.device[p])
        ::unlink(g_sig.finals[k]);
    }
    for (int k = 0; k < g_sig.n_locks; ++k) ::unlink(g_sig.locks[k]);
  }
  for (int i = 0; i < 3; ++i)
    if (kSignals[i] == sig) sigaction(sig, &g_old[i], nullptr);   // the previous disposition (default: exit)
  raise(sig);
}

void copy_path(char* dst, const std::string& src) {
  std::snprintf(dst, PATH_MAX, "%s", src.c_str());
}

void arm_signals() {
  if (g_sig.armed) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : kSignals) sigaddset(&sa.sa_mask, s);
  for (int i = 0; i < 3; ++i) {
    sigaction(kSignals[i], nullptr, &g_old[i]);
    if (g_old[i].sa_handler != SIG_IGN) sigaction(kSignals[i], &sa, nullptr);   // an ignored signal stays so
  }
  g_sig.armed = 1;
}

void disarm_signals() {
  if (!g_sig.armed) return;
  g_sig.armed = 0;
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_old[i], nullptr);
  g_sig.n_staged = g_sig.n_finals = g_sig.n_locks = 0;
  g_sig.staging[0] = 0;
}

// Staging directories in `dir` left by a run that was killed (-9) or by an older plugin: the caller holds the
// directory's lock, so no live run (esorex or CLI) owns one.
void remove_stale_staging(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d))
    if (std::string(e->d_name).rfind(soxs_gen::STAGING_PREFIX, 0) == 0) stale.push_back(dir + "/" + e->d_name);
  closedir(d);
  for (const std::string& s : stale) {
    struct stat st;
    if (::lstat(s.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (DIR* sd = opendir(s.c_str())) {
      while (dirent* e = readdir(sd))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ::unlink((s + "/" + e->d_name).c_str());
      closedir(sd);
    }
    ::rmdir(s.c_str());
  }
}

}  // namespace

std::string esorex_output_dir() {
  const std::vector<std::string> args = cmdline();
  if (args.empty()) return ".";
  const std::string exe = args[0].substr(args[0].find_last_of('/') + 1);
  if (exe != "esorex") return ".";
  std::string dir = option(args, "output-dir");
  if (dir.empty() && std::getenv("ESOREX_OUTPUT_DIR")) dir = std::getenv("ESOREX_OUTPUT_DIR");
  if (dir.empty()) {
    std::string cfg = option(args, "config");
    if (cfg.empty() && std::getenv("ESOREX_CONFIG")) cfg = std::getenv("ESOREX_CONFIG");
    if (cfg.empty() && std::getenv("HOME")) cfg = std::string(std::getenv("HOME")) + "/.esorex/esorex.rc";
    dir = config_value(cfg, "esorex.caller.output-dir");
  }
  return dir.empty() ? "." : dir;
}

std::vector<std::string> esorex_sof_files() {
  const std::vector<std::string> args = cmdline();
  std::vector<std::string> out;
  if (args.empty() || args[0].substr(args[0].find_last_of('/') + 1) != "esorex") return out;
  size_t i = 1;
  while (i < args.size() && args[i] != "soxs_mflat") ++i;
  for (++i; i < args.size(); ++i)
    if (args[i].rfind("-", 0) != 0) out.push_back(args[i]);
  return out;
}

void DirLock::take(const std::string& directory, const std::string& what) {
  const std::string path = lock_path(directory);
  for (int attempt = 0; attempt < 20; ++attempt) {
    int f = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0) throw OutputError(CPL_ERROR_FILE_NOT_CREATED, "the " + what + " " + directory + " is not writable (" +
                                 std::strerror(errno) + ")");
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
      ::close(f);
      throw OutputError(CPL_ERROR_FILE_ALREADY_OPEN, "another soxs_mflat run is writing into the " + what + " " +
                        directory + " (lock file " + path + "); wait for it or run elsewhere");
    }
    struct stat a, b;   // the holder removes the file when done: lock the file that is still there
    if (fstat(f, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_ino == b.st_ino) {
      const std::string pid = std::to_string(getpid()) + "\n";
      if (ftruncate(f, 0) != 0 || write(f, pid.data(), pid.size()) < 0) { /* the pid is informative only */ }
      dir = directory;
      fd = f;
      return;
    }
    ::close(f);
  }
  throw OutputError(CPL_ERROR_FILE_ALREADY_OPEN, "could not take the lock " + path);
}

void DirLock::release() {
  if (fd < 0) return;
  ::unlink(lock_path(dir).c_str());
  ::close(fd);
  fd = -1;
}

void Staging::open(double need, const std::vector<std::string>& products) {
  unlock();
  const std::string out = esorex_output_dir();
  names = products;
  if (names.size() > static_cast<size_t>(kMaxPaths / 2)) names.resize(kMaxPaths / 2);
  arm_signals();   // before the first lock file exists
  locks.emplace_back();
  locks.back().take(".", "working directory");
  copy_path(g_sig.locks[0], lock_path("."));
  g_sig.n_locks = 1;
  struct stat st;
  const bool other = ::stat(out.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && !same_dir(out, ".");
  if (other) {
    locks.emplace_back();
    locks.back().take(out, "output directory");
    copy_path(g_sig.locks[1], lock_path(out));
    g_sig.n_locks = 2;
  }
  remove_stale_staging(".");
  if (other) remove_stale_staging(out);
  check_space(".", "working directory", need);
  if (other) check_space(out, "output directory", need);
  std::string tmpl = std::string(soxs_gen::STAGING_PREFIX) + "XXXXXX";
  if (!mkdtemp(&tmpl[0]))
    throw OutputError(CPL_ERROR_FILE_NOT_CREATED, std::string("cannot create a staging directory in the working "
                      "directory (") + std::strerror(errno) + ")");
  dir = tmpl + "/";
  int n = 0, m = 0;
  for (size_t k = 0; k < names.size(); ++k) {
    g_sig.inode[k] = 0;
    copy_path(g_sig.staged[n++], dir + names[k]);
    if (n < kMaxPaths) copy_path(g_sig.staged[n++], dir + names[k] + ".tmp");   // qc.json's temporary name
    for (const std::string& d : other ? std::vector<std::string>{".", out} : std::vector<std::string>{"."}) {
      if (m >= kMaxPaths) break;
      copy_path(g_sig.finals[m], d + "/" + names[k]);
      g_sig.final_of[m++] = static_cast<char>(k);
    }
    if (n >= kMaxPaths) break;
  }
  g_sig.n_finals = m;
  copy_path(g_sig.staging, tmpl);
  g_sig.n_staged = n;
}

namespace {
std::vector<cpl_frame*> staged(cpl_frameset* frames, const std::string& dir) {
  std::vector<cpl_frame*> out;
  for (cpl_size i = 0; i < cpl_frameset_get_size(frames); ++i) {
    cpl_frame* f = cpl_frameset_get_position(frames, i);
    const char* fn = cpl_frame_get_filename(f);
    if (!dir.empty() && fn && std::string(fn).rfind(dir, 0) == 0) out.push_back(f);
  }
  return out;
}
}  // namespace

void Staging::commit(cpl_frameset* frames) {
  for (cpl_frame* f : staged(frames, dir)) {
    std::string from = cpl_frame_get_filename(f), to = from.substr(dir.size());
    struct stat st;
    const auto k = std::find(names.begin(), names.end(), to) - names.begin();
    if (static_cast<size_t>(k) < names.size() && ::stat(from.c_str(), &st) == 0) {   // ours once renamed
      g_sig.device[k] = st.st_dev;
      g_sig.inode[k] = st.st_ino;
    }
    if (std::rename(from.c_str(), to.c_str()) != 0)
      throw OutputError(CPL_ERROR_FILE_NOT_CREATED, "cannot write the product " + to + " (" + std::strerror(errno) + ")");
    cpl_frame_set_filename(f, to.c_str());
  }
  release();
}

void Staging::release(cpl_frameset* frames) {
  if (frames)
    for (cpl_frame* f : staged(frames, dir)) cpl_frameset_erase_frame(frames, f);
  if (dir.empty()) return;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ::unlink((dir + e->d_name).c_str());
    closedir(d);
  }
  ::rmdir(dir.c_str());
  dir.clear();
}

void Staging::unlock() {
  disarm_signals();   // esorex has moved the products (or the run failed and removed them)
  for (auto it = locks.rbegin(); it != locks.rend(); ++it) it->release();
  locks.clear();
}

}  // namespace soxs_cpl
