//! Diagnostics for policy files: a stable code, the file, line and column, the offending line
//! with a caret, and a hint in words a policy officer understands.

pub mod codes;
pub use codes::Code;

use codespan_reporting::diagnostic::{Diagnostic, Label, Severity as CsSeverity};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, Config};
use std::ops::Range;

/// Identifies a source file registered in [`Sources`].
pub type FileId = usize;

/// All policy source texts, so diagnostics can quote them.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    count: usize,
}

impl Sources {
    /// Add a file's text under `name` (as diagnostics show it); its id.
    pub fn add(&mut self, name: String, text: String) -> FileId {
        self.count += 1;
        self.files.add(name, text)
    }

    /// The name of file `id` (empty if unknown).
    pub fn name(&self, id: FileId) -> String {
        self.files
            .get(id)
            .map(|f| f.name().clone())
            .unwrap_or_default()
    }

    /// The text of file `id` (empty if unknown).
    pub fn text(&self, id: FileId) -> &str {
        self.files
            .get(id)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// 1-based line and column of a byte offset (column counts characters).
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let line = self.files.line_index(id, offset).unwrap_or(0);
        let col = self.files.column_number(id, line, offset).unwrap_or(1);
        (line + 1, col)
    }

    /// How many files are held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no file is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A place in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file.
    pub file: FileId,
    /// Byte range in the file's text.
    pub span: Range<usize>,
}

impl Loc {
    /// A place: `span` of `file`.
    pub fn new(file: FileId, span: Range<usize>) -> Self {
        Loc { file, span }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
/// How serious a diagnostic is.
pub enum Level {
    /// The policy set cannot be used.
    Error,
    /// The policy set loads, but something is probably wrong.
    Warning,
}

/// One problem found in a policy set.
#[derive(Debug, Clone)]
pub struct Diag {
    /// Error or warning.
    pub level: Level,
    /// Stable code, `RB` and four digits.
    pub code: &'static str,
    /// What is wrong, in one line.
    pub message: String,
    /// Where (`None`: the policy set as a whole).
    pub loc: Option<Loc>,
    /// Short text under the caret.
    pub label: String,
    /// "help: …" lines: what to do about it.
    pub help: Vec<String>,
}

impl Diag {
    /// An error with its code and message.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diag {
            level: Level::Error,
            code: code.as_str(),
            message: message.into(),
            loc: None,
            label: String::new(),
            help: Vec::new(),
        }
    }

    /// A warning with its code and message.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diag {
            level: Level::Warning,
            ..Diag::error(code, message)
        }
    }

    /// Where the problem is.
    pub fn at(mut self, loc: Option<Loc>) -> Self {
        self.loc = loc;
        self
    }

    /// A short label under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Add a line telling what to do.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// Render as text: `error[RB0101]: …` then `┌─ file:line:col`, the line and a caret.
    pub fn render(&self, sources: &Sources) -> String {
        let severity = match self.level {
            Level::Error => CsSeverity::Error,
            Level::Warning => CsSeverity::Warning,
        };
        let mut d = Diagnostic::new(severity)
            .with_code(self.code)
            .with_message(&self.message);
        if let Some(loc) = &self.loc {
            let len = sources.text(loc.file).len();
            let start = loc.span.start.min(len);
            let end = loc.span.end.clamp(start, len);
            d = d.with_labels(vec![
                Label::primary(loc.file, start..end).with_message(&self.label),
            ]);
        }
        d = d.with_notes(self.help.iter().map(|h| format!("help: {h}")).collect());
        let config = Config::default();
        term::emit_into_string(&config, &sources.files, &d)
            .unwrap_or_else(|_| format!("{}[{}]: {}\n", self.level_name(), self.code, self.message))
    }

    /// `error` or `warning`.
    pub fn level_name(&self) -> &'static str {
        match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }

    /// `file:line:col` of the diagnostic, if it has a place.
    pub fn position(&self, sources: &Sources) -> Option<String> {
        let loc = self.loc.as_ref()?;
        let (line, col) = sources.line_col(loc.file, loc.span.start);
        Some(format!("{}:{line}:{col}", sources.name(loc.file)))
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// "did you mean `x`?" or an empty string.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            suggest("staus", ["status", "when", "message"]).as_deref(),
            Some("status")
        );
        assert_eq!(suggest("zzz", ["status", "when"]), None);
    }

    #[test]
    fn renders_file_line_column_and_caret() {
        let mut sources = Sources::default();
        let id = sources.add("p.toml".into(), "a = 1\nstaus = 2\n".into());
        let d = Diag::error(Code::RB0001, "unknown field")
            .at(Some(Loc::new(id, 6..11)))
            .label("here")
            .help("did you mean `status`?");
        let text = d.render(&sources);
        assert!(text.contains("p.toml:2:1"), "{text}");
        assert!(text.contains("staus = 2"), "{text}");
        assert!(text.contains("^^^^^"), "{text}");
        assert_eq!(d.position(&sources).as_deref(), Some("p.toml:2:1"));
    }
}
