//! Why reports cannot be rendered: templates, fonts, Typst, PDF export, writing the files.

use super::GlyphProblem;
use std::path::PathBuf;

/// Reports that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The templates folder cannot be listed.
    #[error("cannot read templates folder {}", .path.display())]
    TemplatesFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An entry of the templates folder cannot be read (the message is the I/O error's).
    #[error("{error}")]
    TemplatesEntry {
        /// The folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The templates do not parse. The message holds Tera's chain of causes
    /// ([`super::tera_error`]), so the error is not given as a source.
    #[error("{}", super::tera_error(.error))]
    Templates {
        /// Tera's error.
        error: tera::Error,
    },
    /// A report's data cannot be given to its template.
    #[error("{error}")]
    Data {
        /// The template.
        template: String,
        /// Tera's error.
        error: tera::Error,
    },
    /// A template fails on a report's data (with Tera's chain of causes).
    #[error("template {template}: {}", super::tera_error(.error))]
    Template {
        /// The template.
        template: String,
        /// Tera's error.
        error: tera::Error,
    },
    /// The rendering threads cannot be started.
    #[error("starting the rendering threads")]
    Threads(#[source] rayon::ThreadPoolBuildError),
    /// With `--strict`, characters no loaded font can print.
    #[error(
        "{} character(s) cannot be printed with the loaded fonts (--strict):\n  {}",
        .0.iter().map(|g| g.characters.len()).sum::<usize>(),
        .0.iter().map(|g| g.to_string()).collect::<Vec<_>>().join("\n  ")
    )]
    Glyphs(Vec<GlyphProblem>),
    /// A report cannot be compiled to PDF.
    #[error("report {kind} {id} (template {kind}.typ.tera)")]
    Report {
        /// `member`, `branch`, `community`, `summary` or `bundle`.
        kind: &'static str,
        /// The subject's id (empty for the summary).
        id: String,
        /// Why.
        source: Box<Error>,
    },
    /// A report or its Typst source cannot be written.
    #[error(transparent)]
    Output(#[from] crate::output::Error),
    /// The output folder's journal of finished reports cannot be written.
    #[error("writing {}", .path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A rendering thread panicked.
    #[error("a rendering thread panicked")]
    Panicked,
    /// Rendering stopped after a failure (another thread's, reported in its place).
    #[error("rendering stopped")]
    Stopped,
    /// A fonts folder cannot be listed.
    #[error("reading fonts in {}", .path.display())]
    FontsFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A font file cannot be read.
    #[error("reading font {}", .path.display())]
    FontFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file in a fonts folder holds no font Typst can read.
    #[error(
        "{} is not a font Typst can read (WOFF/WOFF2 are not supported; use TTF or OTF)",
        .path.display()
    )]
    NotAFont {
        /// The file.
        path: PathBuf,
    },
    /// No font was found in the fonts folders.
    #[error(
        "no fonts found in {}; reports need a CJK font (report-templates/fonts/)",
        .folders.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoFonts {
        /// The folders looked in.
        folders: Vec<PathBuf>,
    },
    /// A lock of the Typst compiler was poisoned (a thread panicked holding it).
    #[error("lock")]
    Lock,
    /// A file name Typst does not accept.
    #[error("{error:?}")]
    VirtualPath {
        /// The name.
        path: String,
        /// Typst's error.
        error: typst::syntax::PathError,
    },
    /// Typst cannot compile a report: its diagnostics, with the line of the generated source
    /// each points at.
    #[error("{message}")]
    Compile {
        /// The diagnostics.
        message: String,
    },
    /// The PDF creation date is outside what Typst can store.
    #[error("bad report date")]
    Date {
        /// The date.
        date: chrono::NaiveDateTime,
    },
    /// Typst cannot export the PDF.
    #[error("PDF export failed: {}", .messages.join("; "))]
    PdfExport {
        /// Typst's messages.
        messages: Vec<String>,
    },
}
