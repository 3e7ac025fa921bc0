#include "soxs_mflat_rawcards.hpp"

#include <algorithm>
#include <cstring>

namespace soxs_cpl {
namespace {

struct StringCard { std::string key, value, comment; bool ok = false; };

// The key and string value of one card ("KEY     = 'v'" or "HIERARCH K K = 'v'", or "CONTINUE  'v'"):
// the value as written (quotes still doubled, trailing blanks kept), the comment after the closing quote.
// The key of a card with a value ("KEY     = ..." or "HIERARCH K K = ...", trailing blanks removed) and where
// its value field starts; false for a card without one.
bool key_of(const std::string& c, std::string& key, size_t& v) {
  if (c.compare(0, 9, "HIERARCH ") == 0) {
    const size_t eq = c.find('=', 9);
    if (eq == std::string::npos) return false;
    key = c.substr(9, eq - 9);
    v = eq + 1;
  } else {
    if (c.compare(8, 2, "= ") != 0) return false;
    key = c.substr(0, 8);
    v = 10;
  }
  key.erase(key.find_last_not_of(' ') + 1);
  return true;
}

StringCard string_card(const std::string& c) {
  StringCard r;
  size_t v = 10;
  if (c.compare(0, 8, "CONTINUE") == 0 && c.compare(8, 2, "  ") == 0)
    r.key = "CONTINUE";
  else if (!key_of(c, r.key, v))
    return r;
  v = c.find_first_not_of(' ', v);
  if (v == std::string::npos || c[v] != '\'') return r;
  size_t i = v + 1;
  for (; i < c.size(); ++i) {
    if (c[i] != '\'') continue;
    if (i + 1 < c.size() && c[i + 1] == '\'') { ++i; continue; }
    break;
  }
  if (i >= c.size()) return r;   // no closing quote
  r.value = c.substr(v + 1, i - v - 1);
  const size_t slash = c.find('/', i + 1);
  if (slash != std::string::npos) {
    r.comment = c.substr(slash + 1);
    r.comment.erase(0, r.comment.find_first_not_of(' '));
    r.comment.erase(r.comment.find_last_not_of(' ') + 1);
  }
  r.ok = true;
  return r;
}

std::string undouble(std::string s) {
  for (size_t p = s.find("''"); p != std::string::npos; p = s.find("''", p + 1)) s.erase(p, 1);
  return s;
}

// One piece of a continued value (as astropy reads it): trailing blanks dropped, then one '&' marker.
bool piece(const std::string& raw, std::string& out) {
  std::string s = undouble(raw);
  s.erase(s.find_last_not_of(' ') + 1);
  const bool more = !s.empty() && s.back() == '&';
  if (more) s.pop_back();
  out += s;
  return more;
}

// Cut `q` (quotes doubled) at most `room` characters in, never between the two quotes of a doubled one.
size_t cut(const std::string& q, size_t room) {
  if (q.size() <= room) return q.size();
  size_t n = room, quotes = 0;
  while (quotes < n && q[n - 1 - quotes] == '\'') ++quotes;
  return quotes % 2 ? n - 1 : n;
}


// The 80-character records of HDU `hdu` (0-based) of `file`; none when it cannot be read.
std::vector<std::string> records(const std::string& file, int hdu) {
  fitsfile* fp = nullptr;
  int status = 0, n = 0;
  if (fits_open_diskfile(&fp, file.c_str(), READONLY, &status) || fits_movabs_hdu(fp, hdu + 1, nullptr, &status) ||
      fits_get_hdrspace(fp, &n, nullptr, &status)) {
    int ignored = 0;
    if (fp) fits_close_file(fp, &ignored);
    ffcmsg();
    return {};
  }
  std::vector<std::string> cards(static_cast<size_t>(n));
  char rec[FLEN_CARD];
  for (int i = 0; i < n && status == 0; ++i) {
    fits_read_record(fp, i + 1, rec, &status);
    cards[static_cast<size_t>(i)] = rec;
    cards[static_cast<size_t>(i)].resize(80, ' ');
  }
  fits_close_file(fp, &status);
  ffcmsg();
  return cards;
}

// The key and comment of a card whose value field is empty (FITS 4.0, section 4.2.1: an undefined value).
bool undefined_card(const std::string& c, std::string& key, std::string& comment) {
  size_t v;
  if (!key_of(c, key, v)) return false;
  const size_t first = c.find_first_not_of(' ', v);
  if (first != std::string::npos && c[first] != '/') return false;   // a value
  comment = first == std::string::npos ? "" : c.substr(first + 1);
  comment.erase(0, comment.find_first_not_of(' '));
  comment.erase(comment.find_last_not_of(' ') + 1);
  return !key.empty();
}

std::vector<Undefined> undefined_values(const std::vector<std::string>& cards) {
  std::vector<Undefined> out;
  for (const std::string& c : cards) {
    Undefined u;
    if (undefined_card(c, u.key, u.comment)) out.push_back(u);
  }
  return out;
}

std::vector<LongString> long_strings(const std::vector<std::string>& cards) {
  std::vector<LongString> out;
  for (size_t i = 0; i < cards.size(); ++i) {
    const StringCard first = string_card(cards[i]);
    if (!first.ok || first.key == "CONTINUE") continue;
    LongString s{first.key, "", first.comment};
    bool more = piece(first.value, s.value);
    size_t j = i + 1;
    for (; more && j < cards.size(); ++j) {
      const StringCard c = string_card(cards[j]);
      if (!c.ok || c.key != "CONTINUE") break;
      more = piece(c.value, s.value);
      if (!c.comment.empty()) s.comment += (s.comment.empty() ? "" : " ") + c.comment;
    }
    if (j > i + 1) out.push_back(std::move(s));   // at least one CONTINUE card: a long string
    i = j - 1;
  }
  return out;
}

}  // namespace

RawCards raw_cards(const std::string& file, int hdu) {
  const std::vector<std::string> cards = records(file, hdu);   // read once for both
  return {long_strings(cards), undefined_values(cards)};
}

std::vector<std::string> long_string_cards(const LongString& s) {
  std::string q = s.value;
  for (size_t p = q.find('\''); p != std::string::npos; p = q.find('\'', p + 2)) q.insert(p, 1, '\'');
  const bool hierarch = s.key.size() > 8 || s.key.find(' ') != std::string::npos;
  std::string head = hierarch ? "HIERARCH " + s.key + " = '" : s.key + std::string(8 - s.key.size(), ' ') + "= '";
  std::vector<std::string> cards;
  if (head.size() + 4 > 80) return cards;   // no room for a piece of the value: the key is left as CPL wrote it
  size_t pos = 0;
  do {   // each card: head, a piece, "&'" (the last piece's closed below)
    const size_t n = cut(q.substr(pos), 80 - head.size() - 2);
    cards.push_back(head + q.substr(pos, n) + "&'");
    pos += n;
    head = "CONTINUE  '";
  } while (pos < q.size());
  std::string& last = cards.back();
  const std::string closed = last.substr(0, last.size() - 2) + "'";
  if (s.comment.empty()) {
    last = closed;
  } else if (closed.size() + 3 + s.comment.size() <= 80) {
    last = closed + " / " + s.comment;
  } else {   // the value stays continued into astropy's comment cards ("&'" then '&' / ... and '' / ...)
    for (size_t c = 0; c < s.comment.size(); c += 64) {
      const bool end = c + 64 >= s.comment.size();
      cards.push_back(std::string(end ? "CONTINUE  '' / " : "CONTINUE  '&' / ") + s.comment.substr(c, 64));
    }
  }
  for (auto& c : cards) c.resize(80, ' ');
  return cards;
}

void put_undefined(fitsfile* fp, const std::vector<Undefined>& keys, int& status) {
  for (const Undefined& u : keys) {   // astropy's layout: "KEY     =  / comment"
    char card[FLEN_CARD];
    int st = 0;
    if (status || ffgcrd(fp, u.key.c_str(), card, &st)) continue;
    const bool hierarch = u.key.size() > 8 || u.key.find(' ') != std::string::npos;
    std::string c = (hierarch ? "HIERARCH " + u.key + " = " : u.key + std::string(8 - u.key.size(), ' ') + "= ") +
                    (u.comment.empty() ? "" : " / " + u.comment);
    if (c.size() > 80) c.resize(80);
    fits_update_card(fp, u.key.c_str(), c.c_str(), &status);
  }
}

void put_long_strings(fitsfile* fp, const std::vector<LongString>& strings, int& status) {
  for (const LongString& s : strings) {
    char card[FLEN_CARD];
    int st = 0, nkeys = 0, next = 0;
    if (status || ffgcrd(fp, s.key.c_str(), card, &st)) continue;   // not inherited by this product
    fits_get_hdrpos(fp, &nkeys, &next, &status);                     // the card after the one found
    const std::vector<std::string> cards = long_string_cards(s);
    if (cards.empty()) continue;
    int at = next - 1;
    fits_delete_record(fp, at, &status);
    for (const std::string& c : cards) fits_insert_record(fp, at++, c.c_str(), &status);
    if (cards.size() > 1)   // fitsverify warns of CONTINUE cards without it; the Python front end writes it too
      fits_update_key_str(fp, "LONGSTRN", "OGIP 1.0", "The OGIP long string convention may be used.", &status);
  }
}

}  // namespace soxs_cpl
