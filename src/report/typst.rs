//! Typst in-process: fonts loaded from bytes (never system fonts), a file resolver that serves
//! only the templates folder and the report being compiled, PDF export with a pinned date,
//! escaping of data placed into Typst markup, and a check that every character has a glyph.

use super::Error;
use sha2::Digest;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Smart};
use typst::syntax::{FileId, Source, VirtualPath, VirtualRoot};
use typst::text::Font;
use typst_as_lib::TypstEngine;
use typst_as_lib::file_resolver::FileResolver;

/// Escape text for Typst markup: every character with a markup meaning gets a backslash,
/// line breaks (every character Typst takes as one: LF, CR, VT, FF, NEL, U+2028, U+2029) and
/// tabs become spaces, other control characters are dropped. `#read("x")` prints as
/// `#read("x")`.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '#' | '$' | '*' | '_' | '`' | '<' | '>' | '@' | '[' | ']' | '~' | '/' | '='
            | '-' | '+' | '.' | ':' | '\'' | '"' | '{' | '}' | '(' | ')' | ';' | ',' | '!'
            | '?' | '%' | '&' | '|' | '^' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                out.push(' ')
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Quote text as a Typst string literal (for code such as chart labels).
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Serves files from the templates folder only (no packages, nothing outside it), and the
/// report sources registered for compilation. Files of the templates folder are read and
/// parsed once per run, not once per report.
struct Resolver {
    root: PathBuf,
    reports: Arc<RwLock<HashMap<FileId, Source>>>,
    sources: RwLock<HashMap<FileId, Source>>,
    binaries: RwLock<HashMap<FileId, Bytes>>,
}

impl Resolver {
    fn path_of(&self, id: FileId) -> FileResult<PathBuf> {
        if !matches!(id.root(), VirtualRoot::Project) {
            return Err(FileError::Other(Some(
                "packages are not available to report templates".into(),
            )));
        }
        let path = id
            .vpath()
            .realize(&self.root)
            .map_err(|_| FileError::AccessDenied)?;
        let canon = path
            .canonicalize()
            .map_err(|e| FileError::from_io(e, &path))?;
        let root = self
            .root
            .canonicalize()
            .map_err(|e| FileError::from_io(e, &self.root))?;
        if !canon.starts_with(&root) {
            return Err(FileError::AccessDenied);
        }
        Ok(canon)
    }
}

impl FileResolver for Resolver {
    fn resolve_binary(&self, id: FileId) -> FileResult<Cow<'_, Bytes>> {
        if let Some(b) = self.binaries.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Cow::Owned(b));
        }
        let path = self.path_of(id)?;
        let bytes = Bytes::new(std::fs::read(&path).map_err(|e| FileError::from_io(e, &path))?);
        if let Ok(mut m) = self.binaries.write() {
            m.insert(id, bytes.clone());
        }
        Ok(Cow::Owned(bytes))
    }

    fn resolve_source(&self, id: FileId) -> FileResult<Cow<'_, Source>> {
        if let Some(s) = self.reports.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Cow::Owned(s));
        }
        if let Some(s) = self.sources.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Cow::Owned(s));
        }
        let path = self.path_of(id)?;
        let bytes = std::fs::read(&path).map_err(|e| FileError::from_io(e, &path))?;
        let text = String::from_utf8(bytes).map_err(|_| FileError::InvalidUtf8)?;
        let source = Source::new(id, text);
        if let Ok(mut m) = self.sources.write() {
            m.insert(id, source.clone());
        }
        Ok(Cow::Owned(source))
    }
}

/// The fonts reports may use, with their character coverage.
pub struct Fonts {
    /// The bytes of each font file read, in folder order and then file-name order.
    pub data: Vec<Bytes>,
    /// One `family weight` line per face found (a `.ttc` file may hold several faces).
    pub names: Vec<String>,
    faces: Vec<Font>,
}

impl Fonts {
    /// Load every `.ttf`/`.otf`/`.ttc` in the given folders.
    pub fn load(dirs: &[PathBuf]) -> Result<Fonts, Error> {
        let mut data = Vec::new();
        let mut names = Vec::new();
        let mut faces = Vec::new();
        for dir in dirs {
            if !dir.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|source| Error::FontsFolder {
                    path: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        matches!(
                            e.to_ascii_lowercase().as_str(),
                            "ttf" | "otf" | "ttc" | "otc"
                        )
                    })
                })
                .collect();
            files.sort();
            for f in files {
                let bytes = Bytes::new(std::fs::read(&f).map_err(|source| Error::FontFile {
                    path: f.clone(),
                    source,
                })?);
                let found: Vec<Font> = Font::iter(bytes.clone()).collect();
                if found.is_empty() {
                    return Err(Error::NotAFont { path: f });
                }
                for face in &found {
                    names.push(format!(
                        "{} {:?}",
                        face.info().family,
                        face.info().variant.weight
                    ));
                }
                faces.extend(found);
                data.push(bytes);
            }
        }
        if data.is_empty() {
            return Err(Error::NoFonts {
                folders: dirs.to_vec(),
            });
        }
        Ok(Fonts { data, names, faces })
    }

    /// Whether `c` prints: some loaded font has a glyph for it, or it is whitespace, a
    /// control character or a default-ignorable code point (a variation selector such as
    /// U+E0100 after an ideograph, a zero-width joiner), which Typst never draws a glyph for.
    pub fn covers(&self, c: char) -> bool {
        c.is_whitespace()
            || c.is_control()
            || typst::text::is_default_ignorable(c)
            || self
                .faces
                .iter()
                .any(|f| f.info().coverage.contains(c as u32))
    }
}

/// A line in a generated report that starts its shared part: everything from this line to
/// the end is the same in many reports (the appendix), uses only what it imports itself, and
/// is compiled as a file of its own that the report includes. Typst then sees the same file,
/// with the same spans, in every report, and its memoized layout of that part is reused.
pub const SHARED_MARKER: &str = "// rulebook:shared";

/// Where the shared part of a generated report starts (the start of its [`SHARED_MARKER`]
/// line), if it has one.
pub fn shared_start(source: &str) -> Option<usize> {
    if source.starts_with(SHARED_MARKER) {
        Some(0)
    } else {
        source.find(&format!("\n{SHARED_MARKER}")).map(|i| i + 1)
    }
}

/// At most this many distinct shared parts are kept as files; past that (a template whose
/// shared part differs per report) reports compile as one file.
const MAX_SHARED: usize = 64;

/// How many evictions a memoized Typst result survives without being used. Reports are laid
/// out one after another on each thread and evict after each one: results of the shared
/// part are used by every report and stay; the rest is dropped soon, so the cache (which
/// every eviction walks) stays small.
const EVICT_MAX_AGE: usize = 2;

/// A report's generated source, split into its own part and a shared part it includes.
struct Split {
    main: String,
    /// The shared file and how many lines of the report come before it.
    shared: Option<(Source, usize)>,
}

/// Compiles Typst sources to PDF, reusing fonts and caches across reports.
pub struct Compiler {
    engine: TypstEngine,
    reports: Arc<RwLock<HashMap<FileId, Source>>>,
    /// Shared parts by their text.
    shared: RwLock<HashMap<String, Source>>,
    /// Free compile slots. Each report being compiled takes one and lives in that slot's
    /// folder (`/__slot_N/`) with the files it includes: Typst numbers every file path it
    /// ever sees in 16 bits for the whole process, so paths are reused, not made per report
    /// (a province's 200,000 member forms would run out of numbers).
    slots: std::sync::Mutex<Vec<usize>>,
    /// Slots made so far.
    slots_made: std::sync::atomic::AtomicUsize,
}

impl Compiler {
    /// A compiler that resolves template files under `templates` and typesets with `fonts`.
    pub fn new(templates: &Path, fonts: &Fonts) -> Compiler {
        let reports = Arc::new(RwLock::new(HashMap::new()));
        let engine = TypstEngine::builder()
            .fonts(fonts.data.iter().cloned())
            .add_file_resolver(Resolver {
                root: templates.to_path_buf(),
                reports: reports.clone(),
                sources: Default::default(),
                binaries: Default::default(),
            })
            // Evicted in `pdf`, after each report.
            .comemo_evict_max_age(None)
            .build();
        Compiler {
            engine,
            reports,
            shared: Default::default(),
            slots: Default::default(),
            slots_made: Default::default(),
        }
    }

    /// Split off the shared part of a report (from [`SHARED_MARKER`] on), registering it
    /// as a file the first time it is seen.
    fn split(&self, source: &str) -> Result<Split, Error> {
        let Some(at) = shared_start(source) else {
            return Ok(Split {
                main: source.to_string(),
                shared: None,
            });
        };
        let (head, tail) = source.split_at(at);
        let lines_before = head.matches('\n').count();
        let known = self
            .shared
            .read()
            .map_err(|_| Error::Lock)?
            .get(tail)
            .cloned();
        let src = match known {
            Some(s) => s,
            None => {
                let mut shared = self.shared.write().map_err(|_| Error::Lock)?;
                if let Some(s) = shared.get(tail) {
                    s.clone()
                } else if shared.len() >= MAX_SHARED {
                    return Ok(Split {
                        main: source.to_string(),
                        shared: None,
                    });
                } else {
                    let digest = sha2::Sha256::digest(tail.as_bytes());
                    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                    let name = format!("/__shared_{hex}.typ");
                    let vpath = VirtualPath::new(&name)
                        .map_err(|error| Error::VirtualPath { path: name, error })?;
                    let id =
                        FileId::new(typst::syntax::RootedPath::new(VirtualRoot::Project, vpath));
                    let src = Source::new(id, tail.to_string());
                    self.reports
                        .write()
                        .map_err(|_| Error::Lock)?
                        .insert(id, src.clone());
                    shared.insert(tail.to_string(), src.clone());
                    src
                }
            }
        };
        let path = src.id().vpath().get_with_slash().to_string();
        Ok(Split {
            main: format!("{head}#include {}\n", string_literal(&path)),
            shared: Some((src, lines_before)),
        })
    }

    /// Compile one report's Typst source to PDF bytes. `files` are more Typst files the
    /// source includes (a bundle's reports) by paths relative to it (`part-3.typ`); `ident`
    /// names the document stably; `date` pins the PDF's creation date.
    pub fn pdf(
        &self,
        source: &str,
        files: &[(String, String)],
        ident: &str,
        date: chrono::NaiveDateTime,
    ) -> Result<Vec<u8>, Error> {
        let slot = self.take_slot()?;
        let r = self.pdf_in(slot, source, files, ident, date);
        if let Ok(mut free) = self.slots.lock() {
            free.push(slot);
        }
        r
    }

    /// A free compile slot.
    fn take_slot(&self) -> Result<usize, Error> {
        let mut free = self.slots.lock().map_err(|_| Error::Lock)?;
        Ok(free.pop().unwrap_or_else(|| {
            self.slots_made
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        }))
    }

    /// How many compile slots (sets of file paths) were made: at most the reports compiled
    /// at once.
    pub fn slots_made(&self) -> usize {
        self.slots_made.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pdf_in(
        &self,
        slot: usize,
        source: &str,
        files: &[(String, String)],
        ident: &str,
        date: chrono::NaiveDateTime,
    ) -> Result<Vec<u8>, Error> {
        let split = self.split(source)?;
        let file_id = |name: &str| -> Result<FileId, Error> {
            let vpath = VirtualPath::new(name).map_err(|error| Error::VirtualPath {
                path: name.to_string(),
                error,
            })?;
            Ok(FileId::new(typst::syntax::RootedPath::new(
                VirtualRoot::Project,
                vpath,
            )))
        };
        let id = file_id(&format!("/__slot_{slot}/report.typ"))?;
        let src = Source::new(id, split.main);
        let mut ids = vec![id];
        {
            let mut reports = self.reports.write().map_err(|_| Error::Lock)?;
            reports.insert(id, src.clone());
            for (path, text) in files {
                let fid = file_id(&format!("/__slot_{slot}/{path}"))?;
                reports.insert(fid, Source::new(fid, text.clone()));
                ids.push(fid);
            }
        }
        let result = self.engine.compile::<_, typst_layout::PagedDocument>(id);
        {
            let mut reports = self.reports.write().map_err(|_| Error::Lock)?;
            for i in &ids {
                reports.remove(i);
            }
        }
        typst::comemo::evict(EVICT_MAX_AGE);
        let doc = result.output.map_err(|e| Error::Compile {
            message: describe_typst_error(&e, &src, split.shared.as_ref()),
        })?;
        let ts = typst::foundations::Datetime::from_ymd_hms(
            chrono::Datelike::year(&date),
            chrono::Datelike::month(&date) as u8,
            chrono::Datelike::day(&date) as u8,
            chrono::Timelike::hour(&date) as u8,
            chrono::Timelike::minute(&date) as u8,
            chrono::Timelike::second(&date) as u8,
        )
        .ok_or(Error::Date { date })?;
        let options = typst_pdf::PdfOptions {
            ident: Smart::Custom(ident.to_string()),
            timestamp: Some(typst_pdf::Timestamp::new_utc(ts)),
            ..Default::default()
        };
        typst_pdf::pdf(&doc, &options).map_err(|errs| Error::PdfExport {
            messages: errs.iter().map(|e| e.message.to_string()).collect(),
        })
    }
}

/// Typst errors with the line of the generated source they point at (for the shared part,
/// the line of the whole report as `--keep-typst` writes it).
fn describe_typst_error(
    e: &typst_as_lib::TypstAsLibError,
    src: &Source,
    shared: Option<&(Source, usize)>,
) -> String {
    match e {
        typst_as_lib::TypstAsLibError::TypstSource(diags) => diags
            .iter()
            .map(|d| {
                let located = [Some((src, 0)), shared.map(|(s, before)| (s, *before))]
                    .into_iter()
                    .flatten()
                    .find_map(|(file, before)| {
                        let range = match d.span.get() {
                            typst::syntax::DiagSpanKind::Number { id, num, sub_range }
                                if id == file.id() =>
                            {
                                file.range(num, sub_range)
                            }
                            typst::syntax::DiagSpanKind::Range { id, range } if id == file.id() => {
                                Some(range)
                            }
                            _ => None,
                        }?;
                        Some((file, before, range))
                    });
                match located {
                    Some((file, before, r)) => {
                        let line = file.text()[..r.start.min(file.text().len())]
                            .matches('\n')
                            .count()
                            + 1;
                        let text = file.text().lines().nth(line - 1).unwrap_or("").trim();
                        format!(
                            "generated Typst line {}: {} (`{text}`)",
                            before + line,
                            d.message
                        )
                    }
                    None => match d.span.id() {
                        Some(id) => format!("{}: {}", id.vpath().get_without_slash(), d.message),
                        None => d.message.to_string(),
                    },
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escape_neutralises_code() {
        assert_eq!(escape_markup("#read(\"x\")"), "\\#read\\(\\\"x\\\"\\)");
        assert_eq!(escape_markup("*王*_[1]"), "\\*王\\*\\_\\[1\\]");
        assert_eq!(escape_markup("a\nb"), "a b");
        // Unicode line and paragraph separators are line breaks to Typst (U+2029 twice
        // would start a new paragraph, and either ends a heading): spaces too.
        assert_eq!(
            escape_markup("a\u{2028}b\u{2029}c\u{85}d\u{0B}e"),
            "a b c d e"
        );
        assert_eq!(escape_markup("张三"), "张三");
    }

    #[test]
    fn string_literal_quotes() {
        assert_eq!(string_literal("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    fn compiler() -> Compiler {
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("report-templates");
        let fonts = Fonts::load(&[templates.join("fonts")]).unwrap();
        Compiler::new(&templates, &fonts)
    }

    #[test]
    fn the_shipped_fonts_cover_rare_name_characters() {
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("report-templates");
        let fonts = Fonts::load(&[templates.join("fonts")]).unwrap();
        // GBK, Extension A (two- and four-byte GB18030), Extensions B-F, and a variation
        // selector (drawn as nothing, so nothing is missing).
        for c in "张喆䶮㑊𠮷𪚥𫠝\u{2CEB0}\u{2EBE0}\u{E0100}\u{FE00}\u{200D}".chars() {
            assert!(fonts.covers(c), "U+{:04X}", c as u32);
        }
        // Extension H and private use: no shipped font has them.
        for c in ['\u{31350}', '\u{E000}'] {
            assert!(!fonts.covers(c), "U+{:04X}", c as u32);
        }
    }

    fn date() -> chrono::NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2020, 12, 31)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    const HEAD: &str = "#import \"/lib.typ\": *\n#show: report.with(title: \"T\", subtitle: \"S1\", date: datetime(year: 2020, month: 12, day: 31), policy: \"P\")\n= 报告\n张三\n";
    const TAIL: &str = "#import \"/lib.typ\": *\n#pagebreak(weak: true)\n== 附录\n#facts([规则集], [甲], [版本], [1])\n";

    #[test]
    fn the_shared_part_is_one_file_for_all_reports() {
        let c = compiler();
        let a = c.split(&format!("{HEAD}{SHARED_MARKER}\n{TAIL}")).unwrap();
        let b = c
            .split(&format!(
                "{}{SHARED_MARKER}\n{TAIL}",
                HEAD.replace("S1", "S2")
            ))
            .unwrap();
        let (sa, before) = a.shared.unwrap();
        let (sb, _) = b.shared.unwrap();
        assert_eq!(sa.id(), sb.id());
        assert_eq!(before, HEAD.lines().count());
        assert!(a.main.ends_with(&format!(
            "#include \"{}\"\n",
            sa.id().vpath().get_with_slash()
        )));
        assert!(!a.main.contains("附录"));
        // Without the marker the report stays one file.
        assert!(c.split(&format!("{HEAD}{TAIL}")).unwrap().shared.is_none());
    }

    #[test]
    fn a_shared_part_prints_the_same_pdf_as_one_file() {
        let c = compiler();
        let shared = c
            .pdf(&format!("{HEAD}{SHARED_MARKER}\n{TAIL}"), &[], "x", date())
            .unwrap();
        let single = c
            .pdf(&format!("{HEAD}// not shared\n{TAIL}"), &[], "x", date())
            .unwrap();
        assert_eq!(shared, single);
        // And again, now that Typst has laid the shared part out once.
        let again = c
            .pdf(&format!("{HEAD}{SHARED_MARKER}\n{TAIL}"), &[], "x", date())
            .unwrap();
        assert_eq!(shared, again);
    }

    #[test]
    fn reports_reuse_their_file_paths() {
        // Typst numbers file paths in 16 bits for the whole process: a run of 200,000
        // reports must not make a path per report. One thread, one slot, however many.
        let c = compiler();
        let parts = [("part-0.typ".to_string(), "Included part".to_string())];
        for _ in 0..20 {
            let src = format!("{HEAD}#include \"part-0.typ\"\n");
            c.pdf(&src, &parts, "x", date()).unwrap();
        }
        assert_eq!(c.slots_made(), 1);
    }

    #[test]
    fn errors_in_the_shared_part_name_the_line_of_the_whole_report() {
        let c = compiler();
        let src = format!("{HEAD}{SHARED_MARKER}\n{TAIL}#nosuchfunction()\n");
        let err = c.pdf(&src, &[], "x", date()).unwrap_err().to_string();
        let line = src
            .lines()
            .position(|l| l.contains("nosuchfunction"))
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("generated Typst line {line}:")),
            "{err}"
        );
    }
}
