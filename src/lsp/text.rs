//! Places in text: byte offsets ↔ LSP positions (lines and UTF-16 code units), and a TOML
//! string token ↔ the string it holds (for Rhai expressions written inside TOML strings).

use lsp_types::{Position, Range};

/// The LSP position of byte `offset` in `text`: 0-based line, and the column in UTF-16 code
/// units (a Chinese character is one unit, an emoji two).
pub fn position(text: &str, offset: usize) -> Position {
    let offset = floor_char(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count();
    let character: usize = text[line_start..offset].chars().map(char::len_utf16).sum();
    Position::new(line as u32, character as u32)
}

/// The LSP range of byte range `span` in `text`.
pub fn range(text: &str, span: &std::ops::Range<usize>) -> Range {
    Range::new(position(text, span.start), position(text, span.end))
}

/// The byte offset of LSP position `pos` in `text` (clamped to the line's end and the
/// text's end).
pub fn offset(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0u32;
    for (i, ch) in text[line_start..].char_indices() {
        if ch == '\n' || ch == '\r' || units >= pos.character {
            return line_start + i;
        }
        units += ch.len_utf16() as u32;
    }
    text.len()
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A TOML string token decoded: the string it holds, and where each of its bytes is written.
#[derive(Debug, Clone)]
pub struct TomlStr {
    /// The string's value (escapes resolved).
    pub value: String,
    /// For each byte of `value` (and one past its end), its offset in the file.
    map: Vec<usize>,
}

impl TomlStr {
    /// Decode the string token at `span` of `text` (`"…"`, `'…'`, `"""…"""` or `'''…'''`);
    /// `None` when the span is not a string token.
    pub fn decode(text: &str, span: &std::ops::Range<usize>) -> Option<TomlStr> {
        let tok = text.get(span.clone())?;
        let (quote, literal) = if tok.starts_with("\"\"\"") {
            (3, false)
        } else if tok.starts_with("'''") {
            (3, true)
        } else if tok.starts_with('"') {
            (1, false)
        } else if tok.starts_with('\'') {
            (1, true)
        } else {
            return None;
        };
        if tok.len() < 2 * quote {
            return None;
        }
        let mut start = quote;
        // A newline right after the opening quotes of a multi-line string is not part of it.
        if quote == 3 {
            if tok[start..].starts_with("\r\n") {
                start += 2;
            } else if tok[start..].starts_with('\n') {
                start += 1;
            }
        }
        let body = &tok[start.min(tok.len() - quote)..tok.len() - quote];
        let base = span.start + start;
        let mut out = TomlStr {
            value: String::new(),
            map: Vec::new(),
        };
        if literal {
            for (i, ch) in body.char_indices() {
                out.push(ch, base + i);
            }
        } else {
            out.decode_basic(body, base);
        }
        out.map.push(base + body.len());
        Some(out)
    }

    fn push(&mut self, ch: char, at: usize) {
        for _ in 0..ch.len_utf8() {
            self.map.push(at);
        }
        self.value.push(ch);
    }

    fn decode_basic(&mut self, body: &str, base: usize) {
        let mut it = body.char_indices().peekable();
        while let Some((i, ch)) = it.next() {
            if ch != '\\' {
                self.push(ch, base + i);
                continue;
            }
            let Some((_, e)) = it.next() else { break };
            let simple = match e {
                'b' => Some('\u{8}'),
                't' => Some('\t'),
                'n' => Some('\n'),
                'f' => Some('\u{c}'),
                'r' => Some('\r'),
                'e' => Some('\u{1b}'),
                '"' => Some('"'),
                '\\' => Some('\\'),
                _ => None,
            };
            if let Some(c) = simple {
                self.push(c, base + i);
            } else if e == 'u' || e == 'U' || e == 'x' {
                let n = match e {
                    'u' => 4,
                    'U' => 8,
                    _ => 2,
                };
                let hex: String = (0..n).filter_map(|_| it.next().map(|(_, c)| c)).collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    self.push(c, base + i);
                }
            } else if e.is_whitespace() {
                // A line-ending backslash: the newline and the whitespace after it vanish.
                while it.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    it.next();
                }
            }
        }
    }

    /// The file offset of byte `i` of the value.
    pub fn file_offset(&self, i: usize) -> usize {
        self.map[i.min(self.map.len() - 1)]
    }

    /// The byte of the value written at file offset `at`, if `at` lies inside the string
    /// (at its closing quote: the value's end).
    pub fn value_offset(&self, at: usize) -> Option<usize> {
        let first = *self.map.first()?;
        let last = *self.map.last()?;
        if at < first || at > last {
            return None;
        }
        // The last byte written at or before `at`, moved to a character boundary.
        // (Inside an escape sequence: the character it writes.)
        let i = self.map.partition_point(|&o| o <= at).saturating_sub(1);
        let mut i = i.min(self.value.len());
        while !self.value.is_char_boundary(i) {
            i -= 1;
        }
        Some(i)
    }

    /// The file range of value bytes `r`.
    pub fn file_range(&self, r: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = self.file_offset(r.start);
        let end = if r.end > r.start {
            // One past the last byte's character as written.
            let last = self.file_offset(r.end - 1);
            let next = self.file_offset(r.end);
            if next > last { next } else { last + 1 }
        } else {
            start
        };
        start..end
    }
}

/// An identifier in an expression: where it is in the expression's text, and how it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// Byte range in the expression.
    pub span: std::ops::Range<usize>,
    /// The name.
    pub name: String,
    /// Written after a `.` (a property or method of a value).
    pub after_dot: bool,
    /// Followed by `(`: a function call.
    pub call: bool,
}

/// The identifiers of a Rhai expression, left to right, skipping string literals, numbers
/// and comments. Lexical only, so it works on an expression that is being typed and does not
/// parse yet (`policy::validate` reads names from Rhai's own AST).
pub fn idents(src: &str) -> Vec<Ident> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'`' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            // A decimal point followed by digits belongs to the number.
            if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let before = src[..s].trim_end();
            let after = src[i..].trim_start();
            out.push(Ident {
                span: s..i,
                name: src[s..i].to_string(),
                after_dot: before.ends_with('.') && !before.ends_with(".."),
                call: after.starts_with('('),
            });
        } else {
            i += 1;
        }
    }
    out
}

/// The identifier being typed at byte `at` of `src`: its start and the part before `at`.
pub fn prefix_at(src: &str, at: usize) -> (usize, &str) {
    let at = floor_char(src, at.min(src.len()));
    let start = src[..at]
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(at, |(i, _)| i);
    (start, &src[start..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a = 1\nlabel = \"党员𝄞x\"\n";
        let x = text.find('x').unwrap();
        // `label = "` is 9 units, 党员 2, 𝄞 2 (a surrogate pair).
        assert_eq!(position(text, x), Position::new(1, 13));
        assert_eq!(offset(text, Position::new(1, 13)), x);
        assert_eq!(offset(text, Position::new(0, 99)), 5);
        assert_eq!(offset(text, Position::new(9, 0)), text.len());
        let p = text.find('员').unwrap();
        assert_eq!(offset(text, position(text, p)), p);
    }

    #[test]
    fn basic_strings_map_through_escapes() {
        let text = r#"when = "name == \"张三\" && x > 1""#;
        let start = text.find('"').unwrap();
        let s = TomlStr::decode(text, &(start..text.len())).unwrap();
        assert_eq!(s.value, r#"name == "张三" && x > 1"#);
        let x = s.value.find('x').unwrap();
        assert_eq!(&text[s.file_offset(x)..s.file_offset(x) + 1], "x");
        assert_eq!(s.value_offset(text.find('x').unwrap()), Some(x));
        let name = s.value.find("张三").unwrap();
        assert_eq!(&text[s.file_range(&(name..name + 6))], "张三");
    }

    #[test]
    fn literal_and_multiline_strings() {
        let text = "a = '''\nx + \\y'''";
        let start = text.find('\'').unwrap();
        let s = TomlStr::decode(text, &(start..text.len())).unwrap();
        assert_eq!(s.value, "x + \\y");
        assert_eq!(s.file_offset(0), text.find('x').unwrap());
        let text = "a = \"\"\"\nfirst \\\n   second\"\"\"";
        let start = text.find('"').unwrap();
        let s = TomlStr::decode(text, &(start..text.len())).unwrap();
        assert_eq!(s.value, "first second");
        let sec = s.value.find("second").unwrap();
        assert_eq!(s.file_offset(sec), text.find("second").unwrap());
    }

    #[test]
    fn identifiers_skip_strings_and_numbers() {
        let ids = idents(r#"hours_text(h) + "a b" + 1.5e3 + r.floor() + x"#);
        let names: Vec<&str> = ids.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["hours_text", "h", "r", "floor", "x"]);
        assert!(ids[0].call && !ids[0].after_dot);
        assert!(ids[3].after_dot && ids[3].call);
        assert_eq!(prefix_at("a && verif", 10), (5, "verif"));
        assert_eq!(prefix_at("a && ", 5), (5, ""));
    }
}
