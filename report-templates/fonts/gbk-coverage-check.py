#!/usr/bin/env python3
"""Verify that the bundled Chinese fonts cover every GBK character.

Loads NotoSansSC-Regular.ttf and NotoSansSC-Bold.ttf (next to this script, or the paths
given on the command line) with fontTools and checks that their cmap contains:
  * every code point that any GBK/CP936 byte sequence decodes to: printable ASCII, every
    2-byte sequence (lead 0x81-0xFE, trail 0x40-0x7E/0x80-0xFE) accepted by Python's
    'gbk' codec (identical to its 'cp936'), plus 0x80 -> U+20AC (Microsoft CP936 euro);
  * a list of extra symbols and given-name characters the reports rely on;
and that family name / subfamily / usWeightClass are as expected.
Exits 1 on any failure.  Needs: pip install fonttools
"""
import os
import sys

from fontTools.ttLib import TTFont

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILY = "Noto Sans SC"
EXPECTED = {  # file -> (subfamily, usWeightClass)
    "NotoSansSC-Regular.ttf": ("Regular", 400),
    "NotoSansSC-Bold.ttf": ("Bold", 700),
}
EXTRA = ("✓✗—·•…“”‘’〔〕【】№℃①②③④⑤⑥⑦⑧⑨⑩→←↑↓─│┌┐└┘├┤┬┴┼═║"
         "、。，．：；？！（）《》「」『』〈〉〖〗～￥％＋－×÷±≤≥≠≈≒※§°‰"
         "喆堃玥昇祎垚犇彧珺琍")


def gbk_code_points():
    cps = set(range(0x20, 0x7F)) | {0x20AC}
    for lead in range(0x81, 0xFF):
        for trail in list(range(0x40, 0x7F)) + list(range(0x80, 0xFF)):
            try:
                s = bytes([lead, trail]).decode("gbk")
            except UnicodeDecodeError:
                continue
            cps.add(ord(s))
    return cps


def check(path, gbk):
    ok = True
    font = TTFont(path, lazy=True)
    name = font["name"]
    family = name.getDebugName(16) or name.getDebugName(1)
    sub = name.getDebugName(17) or name.getDebugName(2)
    weight = font["OS/2"].usWeightClass
    want_sub, want_weight = EXPECTED.get(os.path.basename(path), (None, None))
    print(f"{path}: family={family!r} subfamily={sub!r} usWeightClass={weight}")
    if family != FAMILY or (want_sub and (sub, weight) != (want_sub, want_weight)):
        print(f"  FAIL: expected family {FAMILY!r}, subfamily {want_sub!r}, weight {want_weight}")
        ok = False
    cmap = font.getBestCmap()
    missing = sorted(gbk - cmap.keys())
    cjk = sum(1 for c in gbk if 0x4E00 <= c <= 0x9FFF)
    print(f"  cmap: {len(cmap)} code points; GBK: {len(gbk) - len(missing)}/{len(gbk)} "
          f"covered ({cjk} CJK unified ideographs in GBK)")
    if missing:
        ok = False
        print("  FAIL: missing GBK code points: " + " ".join(f"U+{c:04X}" for c in missing[:200]))
    extra_missing = [ch for ch in EXTRA if ord(ch) not in cmap]
    if extra_missing:
        ok = False
        print("  FAIL: missing extra characters: " + " ".join(extra_missing))
    else:
        print(f"  extra symbols and given-name characters: all {len(EXTRA)} present")
    return ok


def main():
    paths = sys.argv[1:] or [os.path.join(HERE, f) for f in EXPECTED]
    gbk = gbk_code_points()
    results = [check(p, gbk) for p in paths]
    print("OK" if all(results) else "FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
