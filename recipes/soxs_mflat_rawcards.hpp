// Raw cards that CPL reads or writes differently from astropy: long string values (the FITS standard's
// CONTINUE convention, section 4.2.1.2) and undefined values of an inherited header.
// CPL reads one card per keyword and writes at most one, so a raw frame's long string (an OBJECT or an ESO
// OBS NAME over 68 characters) would reach the plugin's products cut to its first card, while the Python
// front end (astropy) inherits it whole. These read the whole values from the raw frame with CFITSIO and put
// them, with their CONTINUE cards, in place of the cut cards of a staged product.
#pragma once
#include <fitsio.h>

#include <string>
#include <vector>

namespace soxs_cpl {

struct LongString {
  std::string key;       // without "HIERARCH "
  std::string value;     // the whole value: quotes undoubled, the '&' markers removed
  std::string comment;   // the comments of its cards, joined with blanks (as astropy joins them)
};

// Undefined values ("KEY     =  / comment", FITS 4.0 section 4.2.1): CPL reads such a card as a string made of
// its comment ('/ undefined value'), which the products inherited.
struct Undefined { std::string key, comment; };

// The long strings and undefined values of HDU `hdu` (0-based) of `file`, from one read of its header; none
// when it cannot be read (the input checks have refused unreadable files before the products are written).
struct RawCards {
  std::vector<LongString> strings;
  std::vector<Undefined> undefined;
};
RawCards raw_cards(const std::string& file, int hdu);

// The 80-character cards of one long string in astropy's layout: "KEY     = '...&'", then "CONTINUE  '...&'"
// cards, the comment on the last card where it fits, else the value kept open into "CONTINUE  '&' / ..." and
// "CONTINUE  '' / ..." comment cards.
std::vector<std::string> long_string_cards(const LongString& s);

// Replace each key of `strings` that the current HDU of `fp` holds by its cards (keys it lacks, i.e. not
// inherited, are left out), and write LONGSTRN when CONTINUE cards were. CFITSIO's own
// fits_update_key_longstr mangles HIERARCH keys (CFITSIO 4.2).
void put_long_strings(fitsfile* fp, const std::vector<LongString>& strings, int& status);

// Each key of `keys` that the current HDU of `fp` holds, written back undefined (astropy's layout).
void put_undefined(fitsfile* fp, const std::vector<Undefined>& keys, int& status);

}  // namespace soxs_cpl
