#!/usr/bin/env bash
# Seed the fuzz corpora (tests/fuzz/corpus/<target>/, not committed) from the samples and the
# bad-input corpus. Run from anywhere; safe to re-run (seeds are named by content).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
corpus="$here/corpus"
mkdir -p "$corpus"/{csv_loader,xlsx_loader,policy_file,typst_escape}

# A seed: its bytes on stdin, saved under its SHA-1 (as libFuzzer names corpus files).
save() { # target
  local tmp; tmp="$(mktemp)"; cat >"$tmp"
  mv "$tmp" "$corpus/$1/$(sha1sum "$tmp" | cut -c1-40)"
}

# csv_loader: first byte = the table (index in rulebook_fuzz::TABLES), then the file's first
# 40 lines (short inputs run faster; the fuzzer grows them).
table_index() {
  case "$1" in
    communities|社区) echo 0 ;; organizations|党组织) echo 1 ;; members|党员) echo 2 ;;
    reports|报到记录) echo 3 ;; filings|报备记录) echo 4 ;; assignments|网格编入记录) echo 5 ;;
    services|服务记录) echo 6 ;; checkins|签到记录) echo 7 ;; unit_attendance|单位考勤) echo 8 ;;
    org_registrations|组织报到记录) echo 9 ;; *) echo "" ;;
  esac
}
while IFS= read -r -d '' f; do
  stem="$(basename "$f" .csv)"
  i="$(table_index "$stem")"
  [ -n "$i" ] || continue
  { printf "\\x$(printf %02x "$i")"; head -n 40 "$f"; } | save csv_loader
done < <(find "$root/samples" "$root/tests/corpus" -name '*.csv' -print0)

# xlsx_loader: mode byte 0 + a whole workbook; mode byte 1 + the XML of a worksheet.
while IFS= read -r -d '' f; do
  { printf '\x00'; cat "$f"; } | save xlsx_loader
  python3 - "$f" <<'PY' | save xlsx_loader
import sys, zipfile
try:
    z = zipfile.ZipFile(sys.argv[1])
    sheet = next(n for n in z.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml"))
    sys.stdout.buffer.write(b"\x01" + z.read(sheet)[:8000])
except Exception:
    sys.stdout.buffer.write(b"\x01")
PY
done < <(find "$root/samples" "$root/tests/corpus" -name '*.xlsx' -print0)
printf '\x01<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>member_id</t></is></c><c r="D1" t="n"><v>43862.5</v></c></row></sheetData></worksheet>' | save xlsx_loader

# policy_file: the shipped directive files.
for f in "$root"/policies/directives/*.toml; do save policy_file <"$f"; done

# typst_escape: names and ids from the samples, and hostile text.
cut -d, -f2 "$root/samples/hubei-2020/members.csv" | head -20 | while IFS= read -r name; do
  printf '%s' "$name" | save typst_escape
done
for s in '#read("/etc/passwd")' '*王*_[1]' '$x$ @ref <l> \ ] [' '= heading' '- item' '1. item' \
  'https://example.org/a_b' '/* c */ // d' '\u{41}' '"quoted" '"'"'single'"'" '#{1+1}' ; do
  printf '%s' "$s" | save typst_escape
done
printf 'a\u2028\u2028b\u2029c' | save typst_escape

for t in csv_loader xlsx_loader policy_file typst_escape; do
  echo "$t: $(ls "$corpus/$t" | wc -l) seeds"
done
