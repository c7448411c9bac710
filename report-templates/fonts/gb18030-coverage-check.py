#!/usr/bin/env python3
"""Check that the shipped fonts, together, print GB 18030-2022 implementation level 2.

The fonts are checked as the reports use them (report-templates/lib.typ lists the families
in this order and Typst falls back glyph by glyph), one set per weight:
  Regular: NotoSansSC-Regular.ttf, NotoSansSCExtA-Regular.ttf, RulebookHanExt-Regular.ttf
  Bold:    NotoSansSC-Bold.ttf,    NotoSansSCExtA-Bold.ttf,    RulebookHanExt-Regular.ttf
(bold text falls back to the one regular weight of Rulebook Han Ext).

Checked (exit 1 if any is missing, or if a font's family name or weight is not as expected):
  gb2byte  every character of GB 18030's one- and two-byte codes: what Python's `gb18030`
           codec decodes each two-byte sequence to, private-use results replaced by the
           characters GB 18030-2005/2022 assign (U+1E3F, U+FE10-FE19, U+9FB4-9FBB, and the
           six Extension B characters of 0xFE51 0xFE52 0xFE53 0xFE6C 0xFE76 0xFE91);
  level1   the ideographs of level 1: CJK Unified Ideographs U+4E00-9FEF, Extension A
           U+3400-4DB5 and the 12 unified ideographs of the compatibility block;
  level2   the 196 ideographs level 2 adds: the characters of the Table of General Standard
           Chinese Characters (通用规范汉字表, 2013) outside the BMP, from Unihan's kTGH
           field (Unicode 15.0.0: Debian package unicode-data 15.0.0-1,
           Unihan_OtherMappings.txt.bz2, sha256 bdeef44d…2dc2); `--unihan FILE` derives
           the list again from such a file and compares;
  ext-b..f every ideograph of Extensions B-F as GB 18030-2022 lists them (Unicode 10.0).
Reported, not required: ideographs Unicode added later (the ends of the URO and of
Extensions A, B and C; Extensions G, H and I).

Not checked: the non-ideographic characters of GB 18030's four-byte area (minority scripts
such as Tibetan, Mongolian, Yi, Uyghur): the reports do not print them and no shipped
font has them.  Needs: pip install fonttools
"""
import bz2
import os
import sys

from fontTools.ttLib import TTFont

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = {  # file -> (family, usWeightClass)
    "NotoSansSC-Regular.ttf": ("Noto Sans SC", 400),
    "NotoSansSC-Bold.ttf": ("Noto Sans SC", 700),
    "NotoSansSCExtA-Regular.ttf": ("Noto Sans SC Ext A", 400),
    "NotoSansSCExtA-Bold.ttf": ("Noto Sans SC Ext A", 700),
    "RulebookHanExt-Regular.ttf": ("Rulebook Han Ext", 500),
}
SETS = {
    "Regular": ["NotoSansSC-Regular.ttf", "NotoSansSCExtA-Regular.ttf", "RulebookHanExt-Regular.ttf"],
    "Bold": ["NotoSansSC-Bold.ttf", "NotoSansSCExtA-Bold.ttf", "RulebookHanExt-Regular.ttf"],
}

# Unihan 15.0.0 kTGH, code points above U+FFFF (GB 18030-2022 level 2 adds exactly these).
LEVEL2 = (
    "20164 20676 20CD0 2139A 21413 235CB 23C97 23C98 23E23 249DB 24A7D 24AC9 25532 25562 255A8 25ED7"
    " 26221 2648D 26676 2677C 26B5C 26C21 27FF9 28408 28678 28695 287E0 28B49 28C47 28C4F 28C51 28C54"
    " 28E99 29F7E 29F83 29F8C 2A7DD 2A8FB 2A917 2AA30 2AA36 2AA58 2AFA2 2B127 2B128 2B137 2B138 2B1ED"
    " 2B300 2B363 2B36F 2B372 2B37D 2B404 2B410 2B413 2B461 2B4E7 2B4EF 2B4F6 2B4F9 2B50D 2B50E 2B536"
    " 2B5AE 2B5AF 2B5B3 2B5E7 2B5F4 2B61C 2B61D 2B626 2B627 2B628 2B62A 2B62C 2B695 2B696 2B6AD 2B6ED"
    " 2B7A9 2B7C5 2B7E6 2B7F9 2B7FC 2B806 2B80A 2B81C 2B8B8 2BAC7 2BB5F 2BB62 2BB7C 2BB83 2BC1B 2BD77"
    " 2BD87 2BDF7 2BE29 2C029 2C02A 2C0A9 2C0CA 2C1D5 2C1D9 2C1F9 2C27C 2C288 2C2A4 2C317 2C35B 2C361"
    " 2C364 2C488 2C494 2C497 2C542 2C613 2C618 2C621 2C629 2C62B 2C62C 2C62D 2C62F 2C642 2C64A 2C64B"
    " 2C72C 2C72F 2C79F 2C7C1 2C7FD 2C8D9 2C8DE 2C8E1 2C8F3 2C907 2C90A 2C91D 2CA02 2CA0E 2CA7D 2CAA9"
    " 2CB29 2CB2D 2CB2E 2CB31 2CB38 2CB39 2CB3B 2CB3F 2CB41 2CB4A 2CB4E 2CB5A 2CB5B 2CB64 2CB69 2CB6C"
    " 2CB6F 2CB73 2CB76 2CB78 2CB7C 2CBB1 2CBBF 2CBC0 2CBCE 2CC56 2CC5F 2CCF5 2CCF6 2CCFD 2CCFF 2CD02"
    " 2CD03 2CD0A 2CD8B 2CD8D 2CD8F 2CD90 2CD9F 2CDA0 2CDA8 2CDAD 2CDAE 2CDD5 2CE18 2CE1A 2CE23 2CE26"
    " 2CE2A 2CE7C 2CE88 2CE93"
)

COMPAT_UNIFIED = [0xFA0E, 0xFA0F, 0xFA11, 0xFA13, 0xFA14, 0xFA1F, 0xFA21, 0xFA23, 0xFA24,
                  0xFA27, 0xFA28, 0xFA29]
# Two-byte codes that GB 18030-2000 (Python's codec) maps to private use, and what the
# standard assigns instead.
PUA_REPLACED = [0x1E3F] + list(range(0xFE10, 0xFE1A)) + list(range(0x9FB4, 0x9FBC)) + [
    0x20087, 0x20089, 0x200CC, 0x215D7, 0x2298F, 0x241FE]
# Extensions B-F as GB 18030-2022 has them (Unicode 10.0), and what Unicode added later.
EXTENSIONS = [
    ("ext-b", 0x20000, 0x2A6D6), ("ext-c", 0x2A700, 0x2B734), ("ext-d", 0x2B740, 0x2B81D),
    ("ext-e", 0x2B820, 0x2CEA1), ("ext-f", 0x2CEB0, 0x2EBE0),
]
LATER = [
    ("later: U+9FF0-9FFF (Unicode 13-14)", 0x9FF0, 0x9FFF),
    ("later: ext-a U+4DB6-4DBF (Unicode 13)", 0x4DB6, 0x4DBF),
    ("later: ext-b U+2A6D7-2A6DF (Unicode 13-14)", 0x2A6D7, 0x2A6DF),
    ("later: ext-c U+2B735-2B739 (Unicode 14-15)", 0x2B735, 0x2B739),
    ("later: ext-g U+30000-3134A (Unicode 13)", 0x30000, 0x3134A),
    ("later: ext-h U+31350-323AF (Unicode 15)", 0x31350, 0x323AF),
    ("later: ext-i U+2EBF0-2EE5D (Unicode 15.1)", 0x2EBF0, 0x2EE5D),
]


def is_pua(c):
    return 0xE000 <= c <= 0xF8FF


def gb_two_byte():
    cps = set(range(0x20, 0x7F)) | {0x20AC}
    for lead in range(0x81, 0xFF):
        for trail in list(range(0x40, 0x7F)) + list(range(0x80, 0xFF)):
            try:
                s = bytes([lead, trail]).decode("gb18030")
            except UnicodeDecodeError:
                continue
            if not is_pua(ord(s)):
                cps.add(ord(s))
    return cps | set(PUA_REPLACED)


def level1():
    return set(range(0x4E00, 0x9FF0)) | set(range(0x3400, 0x4DB6)) | set(COMPAT_UNIFIED)


def level2():
    return {int(h, 16) for h in LEVEL2.split()}


def from_unihan(path):
    opener = bz2.open if path.endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as f:
        cps = set()
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] == "kTGH" and parts[0].startswith("U+"):
                cps.add(int(parts[0][2:], 16))
    return {c for c in cps if c > 0xFFFF}


def load(path):
    font = TTFont(path, lazy=True)
    name = font["name"]
    family = name.getDebugName(16) or name.getDebugName(1)
    weight = font["OS/2"].usWeightClass
    want = EXPECTED.get(os.path.basename(path))
    ok = want is None or want == (family, weight)
    print(f"{os.path.basename(path)}: family={family!r} usWeightClass={weight}, "
          f"{len(font.getBestCmap()):,} code points" + ("" if ok else f"  FAIL: expected {want}"))
    return set(font.getBestCmap()), ok


def report(label, want, have, required=True):
    missing = sorted(want - have)
    got = len(want) - len(missing)
    status = "" if not missing else ("  FAIL" if required else "  (not required)")
    print(f"  {label}: {got:,}/{len(want):,}{status}")
    if missing and required:
        print("    missing: " + " ".join(f"U+{c:04X}" for c in missing[:100])
              + (" …" if len(missing) > 100 else ""))
    return not (missing and required)


def main():
    args = sys.argv[1:]
    ok = True
    if args[:1] == ["--unihan"]:
        derived = from_unihan(args[1])
        same = derived == level2()
        print(f"kTGH outside the BMP in {args[1]}: {len(derived)} code points, "
              + ("the same as the list here" if same else "DIFFERENT from the list here"))
        ok &= same
        args = args[2:]
    folder = args[0] if args else HERE
    cmaps = {}
    for f in EXPECTED:
        cmaps[f], font_ok = load(os.path.join(folder, f))
        ok &= font_ok
    groups = [("gb2byte", gb_two_byte()), ("level1", level1()), ("level2", level2())]
    groups += [(n, set(range(a, b + 1))) for n, a, b in EXTENSIONS]
    for weight, files in SETS.items():
        have = set().union(*(cmaps[f] for f in files))
        print(f"{weight} ({' + '.join(files)}):")
        for label, want in groups:
            ok &= report(label, want, have)
        for label, a, b in LATER:
            report(label, set(range(a, b + 1)), have, required=False)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
