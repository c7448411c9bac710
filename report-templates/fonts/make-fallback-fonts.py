#!/usr/bin/env python3
"""Make the fallback fonts for rare name characters from their upstream packages.

    npm pack @expo-google-fonts/noto-sans-sc@0.4.3
    apt-get download fonts-hanazono=20170904-2.1
    python3 make-fallback-fonts.py expo-google-fonts-noto-sans-sc-0.4.3.tgz \
        fonts-hanazono_20170904-2.1_all.deb [OUTDIR]

writes into OUTDIR (default: the folder of this script)
  * NotoSansSCExtA-Regular.ttf, NotoSansSCExtA-Bold.ttf: Noto Sans SC (the same upstream
    files as NotoSansSC-*.ttf) subset to CJK Extension A (U+3400-4DBF), family renamed
    "Noto Sans SC Ext A" so that Typst can fall back to it from "Noto Sans SC";
  * RulebookHanExt-Regular.ttf: HanaMinB (GlyphWiki Project) subset to CJK Extensions B-F
    (U+20000-2A6DF, U+2A700-2EBEF), renamed "Rulebook Han Ext" because "HanaMinB" and
    "Hanazono Font" are Reserved Font Names under the OFL;
  * RulebookHanExt-OFL.txt: the OFL with HanaMin's copyright line, taken from the package's
    copyright file.

The package files and the fonts inside them are checked against the sha256 sums below; the
output is the same bytes on every run (fontTools 4.68.0; the fonts' timestamps are kept).
Needs: pip install fonttools==4.68.0
"""
import hashlib
import io
import lzma
import os
import sys
import tarfile

from fontTools import subset
from fontTools.ttLib import TTFont

HERE = os.path.dirname(os.path.abspath(__file__))

NOTO_PACKAGE = "0d69d0f4971d2ff574e3d93cbc218dc950bf3f3f8f8e2c008d97687ed53aee59"
NOTO = {  # member of the npm package -> (sha256, weight name)
    "package/400Regular/NotoSansSC_400Regular.ttf": (
        "d45f67f0a7c0ca3f256950777ce6a61cc7ce5f9696d02900cbbaac25f8aa7d16", "Regular"),
    "package/700Bold/NotoSansSC_700Bold.ttf": (
        "9a38ae0ab28cd5a256f9ea8e00dedc688aac17f7915fcb000572990afa956b96", "Bold"),
}
HANAZONO_PACKAGE = "a6943366b4f5a6cec34221f8b4eb22555a628f0ee6ef4e3d3401cabe9363aeae"
HANAMIN_B = ("./usr/share/fonts/truetype/hanazono/HanaMinB.ttf",
             "829543436cdf7b4c6730e2af5806fa406f8ddf0d4b656e0cd49c58d4db1c8d3c")
HANAZONO_COPYRIGHT = "./usr/share/doc/fonts-hanazono/copyright"

EXT_A = "U+3400-4DBF"
EXT_B_TO_F = "U+20000-2A6DF,U+2A700-2EBEF"

OFL_13 = ("This Font Software is licensed under the SIL Open Font License, Version 1.1. "
          "This license is available with a FAQ at: http://scripts.sil.org/OFL")
OFL_14 = "http://scripts.sil.org/OFL"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def checked(data, want, what):
    got = sha256(data)
    if got != want:
        sys.exit(f"{what}: sha256 {got}, expected {want}")
    return data


def deb_data_tar(deb):
    """The data.tar.xz member of a .deb (an `ar` archive) as a tarfile."""
    if not deb.startswith(b"!<arch>\n"):
        sys.exit("not a .deb (ar archive)")
    at = 8
    while at + 60 <= len(deb):
        header = deb[at:at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[at + 60:at + 60 + size]
        if name == "data.tar.xz":
            return tarfile.open(fileobj=io.BytesIO(lzma.decompress(body)))
        at += 60 + size + (size % 2)
    sys.exit("the .deb has no data.tar.xz")


def options():
    """pyftsubset --layout-features='*' --name-IDs='*' --name-languages='*' --name-legacy
    --no-hinting --no-glyph-names --notdef-outline (as for NotoSansSC-*.ttf)."""
    o = subset.Options()
    o.layout_features = ["*"]
    o.name_IDs = ["*"]
    o.name_languages = ["*"]
    o.name_legacy = True
    o.hinting = False
    o.glyph_names = False
    o.notdef_outline = True
    return o


def subset_font(data, unicodes):
    font = TTFont(io.BytesIO(data), recalcTimestamp=False)
    s = subset.Subsetter(options())
    s.populate(unicodes=subset.parse_unicodes(unicodes))
    s.subset(font)
    return font


def rename(font, names, drop=()):
    """Replace name records: every record (all platforms and languages) of the IDs given or
    dropped goes, and so do the legacy Mac records (as in NotoSansSC-*.ttf, which has
    none); the new ones are written for Windows, en-US."""
    table = font["name"]
    gone = set(names) | set(drop)
    table.names = [r for r in table.names if r.nameID not in gone and r.platformID != 1]
    for name_id, text in sorted(names.items()):
        table.setName(text, name_id, 3, 1, 0x409)


def save(font, path):
    font.save(path)
    with open(path, "rb") as f:
        data = f.read()
    print(f"{os.path.basename(path)}: {len(data):,} bytes, "
          f"{len(font.getBestCmap()):,} code points, sha256 {sha256(data)}")


def noto_ext_a(package, out):
    with tarfile.open(fileobj=io.BytesIO(package)) as tar:
        for member, (digest, weight) in NOTO.items():
            data = checked(tar.extractfile(member).read(), digest, member)
            font = subset_font(data, EXT_A)
            ps = f"NotoSansSCExtA-{weight}"
            rename(font, {
                1: "Noto Sans SC Ext A",
                2: weight,
                3: f"2.004-H2;ADBO;{ps}",
                4: f"Noto Sans SC Ext A {weight}",
                6: ps,
            }, drop=(16, 17, 25))
            save(font, os.path.join(out, f"{ps}.ttf"))


def ofl_text(copyright_file):
    """The `License: Open-Font-License` paragraph of a Debian copyright file, as plain text."""
    lines = copyright_file.decode("utf-8").splitlines()
    start = lines.index("License: Open-Font-License") + 1
    text = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        line = line.rstrip()
        text.append("" if line.strip() == "." else line[2:] if line.startswith("  ") else line[1:])
    return "\n".join(text).strip("\n") + "\n"


def han_ext(package, out):
    tar = deb_data_tar(package)
    data = checked(tar.extractfile(HANAMIN_B[0]).read(), HANAMIN_B[1], HANAMIN_B[0])
    licence = ofl_text(tar.extractfile(HANAZONO_COPYRIGHT).read())
    font = subset_font(data, EXT_B_TO_F)
    copyright_line = " ".join(licence.split("\n\n")[0].split())
    rename(font, {
        0: copyright_line,
        1: "Rulebook Han Ext",
        2: "Regular",
        3: "Rulebook Han Ext Regular 2017-09-04",
        4: "Rulebook Han Ext Regular",
        6: "RulebookHanExt-Regular",
        10: ("HanaMinB (GlyphWiki Project, 2017-09-04) subset to CJK Unified Ideographs "
             "Extensions B-F and renamed, as the SIL OFL 1.1 requires of a Modified Version "
             "(Reserved Font Names: Hanazono Font, HanaMinA, HanaMinB)."),
        13: OFL_13,
        14: OFL_14,
    }, drop=(16, 17))
    save(font, os.path.join(out, "RulebookHanExt-Regular.ttf"))
    with open(os.path.join(out, "RulebookHanExt-OFL.txt"), "w", encoding="utf-8") as f:
        f.write(licence)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out = sys.argv[3] if len(sys.argv) == 4 else HERE
    with open(sys.argv[1], "rb") as f:
        noto = checked(f.read(), NOTO_PACKAGE, sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        hanazono = checked(f.read(), HANAZONO_PACKAGE, sys.argv[2])
    noto_ext_a(noto, out)
    han_ext(hanazono, out)


if __name__ == "__main__":
    main()
