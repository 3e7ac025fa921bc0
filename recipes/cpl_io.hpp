// Thin CPL helpers for the soxs_mflat plugin: frames, headers, images, tables (throwing C++ errors).
#pragma once
#include <cpl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "soxs/mflat.hpp"

namespace soxs_cpl {

// Throw when CPL has an error pending (its message names the file and function).
inline void check(const std::string& what) {
  if (cpl_error_get_code() != CPL_ERROR_NONE) {
    std::string msg = what + ": " + cpl_error_get_message();
    cpl_error_reset();
    throw std::runtime_error(msg);
  }
}

struct PlistDel { void operator()(cpl_propertylist* p) const { cpl_propertylist_delete(p); } };
struct ImageDel { void operator()(cpl_image* p) const { cpl_image_delete(p); } };
struct TableDel { void operator()(cpl_table* p) const { cpl_table_delete(p); } };
using Plist = std::unique_ptr<cpl_propertylist, PlistDel>;
using Image = std::unique_ptr<cpl_image, ImageDel>;
using Table = std::unique_ptr<cpl_table, TableDel>;

inline Plist load_header(const std::string& file, int ext = 0) {
  Plist p(cpl_propertylist_load(file.c_str(), ext));
  check("cannot read the header of " + file);
  return p;
}

inline bool has(const cpl_propertylist* p, const char* key) { return cpl_propertylist_has(p, key) != 0; }

inline double get_num(const cpl_propertylist* p, const char* key, double dflt) {
  if (!has(p, key)) return dflt;
  switch (cpl_propertylist_get_type(p, key)) {
    case CPL_TYPE_INT: return cpl_propertylist_get_int(p, key);
    case CPL_TYPE_LONG: return static_cast<double>(cpl_propertylist_get_long(p, key));
    case CPL_TYPE_LONG_LONG: return static_cast<double>(cpl_propertylist_get_long_long(p, key));
    case CPL_TYPE_FLOAT: return cpl_propertylist_get_float(p, key);
    case CPL_TYPE_DOUBLE: return cpl_propertylist_get_double(p, key);
    default: return dflt;
  }
}

inline std::string get_str(const cpl_propertylist* p, const char* key, const std::string& dflt = "") {
  if (!has(p, key) || cpl_propertylist_get_type(p, key) != CPL_TYPE_STRING) return dflt;
  return cpl_propertylist_get_string(p, key);
}

// A float image as a row-major vector (numpy orientation: first FITS row first).
struct FImage {
  int64_t ny = 0, nx = 0;
  std::vector<float> data;
};

inline int find_ext(const std::string& file, const char* name) {
  cpl_size e = cpl_fits_find_extension(file.c_str(), name);
  check("cannot scan the extensions of " + file);
  return static_cast<int>(e);
}

}  // namespace soxs_cpl
