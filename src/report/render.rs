//! Rendering: Tera templates to Typst markup (data escaped by default), the glyph check
//! against the loaded fonts, and PDFs compiled in-process, in parallel, each written
//! atomically.

use super::*;

/// A safe file name from an id and a name: no separators, no `..`, no reserved names.
pub fn file_name(id: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    let mut base = clean(id);
    let n = clean(name);
    if !n.trim_matches('_').is_empty() {
        base = format!("{base}-{n}");
    }
    let base: String = base.trim_matches(['_', '.']).chars().take(80).collect();
    let upper = base.to_ascii_uppercase();
    let stem = upper.split('.').next().unwrap_or("");
    let reserved = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "LPT1", "LPT2", "LPT3",
    ];
    let base = if base.is_empty() || reserved.contains(&stem) {
        format!("_{base}")
    } else {
        base
    };
    format!("{base}.pdf")
}

/// The characters of a report's data that no loaded font can print: one problem per field
/// (string) that has any, naming each such character once, in the order they first appear.
pub fn check_glyphs(job: &Job, fonts: &typst::Fonts) -> Vec<GlyphProblem> {
    fn walk(
        v: &Value,
        path: &mut Vec<String>,
        fonts: &typst::Fonts,
        report: &str,
        out: &mut Vec<GlyphProblem>,
    ) {
        match v {
            Value::String(s) => {
                let mut characters: Vec<char> = Vec::new();
                for c in s.chars() {
                    if !fonts.covers(c) && !characters.contains(&c) {
                        characters.push(c);
                    }
                }
                if !characters.is_empty() {
                    out.push(GlyphProblem {
                        report: report.to_string(),
                        field: path.join("."),
                        text: s.clone(),
                        characters,
                    });
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    walk(x, path, fonts, report, out);
                    path.pop();
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    path.push(k.clone());
                    walk(x, path, fonts, report, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let report = format!("{} {}", job.kind, job.id);
    let key = job.kind;
    if let Some(v) = job.context.get(key) {
        walk(v, &mut vec![key.to_string()], fonts, &report, &mut out);
    }
    out
}

/// Tera templates of the templates folder, escaping data for Typst markup by default.
pub fn templates(dir: &Path) -> Result<tera::Tera, Error> {
    let mut t = tera::Tera::default();
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|source| Error::TemplatesFolder {
        path: dir.to_path_buf(),
        source,
    })? {
        let p = e
            .map_err(|error| Error::TemplatesEntry {
                path: dir.to_path_buf(),
                error,
            })?
            .path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".tera"))
        {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            files.push((p, Some(name)));
        }
    }
    files.sort();
    t.add_template_files(files)
        .map_err(|error| Error::Templates { error })?;
    t.autoescape_on(vec![".typ.tera"]);
    t.set_escape_fn(typst::escape_markup);
    t.register_filter("str", |v: &Value, _: &HashMap<String, Value>| {
        let s = match v {
            Value::String(s) => s.clone(),
            other => json_text(other),
        };
        Ok(Value::String(typst::string_literal(&s)))
    });
    t.register_filter("num", |v: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(match v {
            Value::Number(n) => n.as_f64().map(script::format_number).unwrap_or_default(),
            Value::Null => "0".into(),
            other => json_text(other),
        }))
    });
    t.register_filter("text", |v: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(json_text(v)))
    });
    Ok(t)
}

/// A Tera error with its chain of causes (template name, line and column where known).
pub fn tera_error(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!("\n  caused by: {s}"));
        src = s.source();
    }
    msg
}

/// Render a job's template to Typst source.
pub fn render_typst(tera: &tera::Tera, job: &Job) -> Result<String, Error> {
    let name = format!("{}.typ.tera", job.kind);
    let ctx = tera::Context::from_value(job.context.clone()).map_err(|error| Error::Data {
        template: name.clone(),
        error,
    })?;
    tera.render(&name, &ctx).map_err(|error| Error::Template {
        template: name,
        error,
    })
}

/// What a report run produced.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Each PDF written (path under the output folder) and its size in bytes.
    pub files: Vec<(PathBuf, u64)>,
    /// Characters no loaded font can print.
    pub glyph_problems: Vec<GlyphProblem>,
    /// Seconds spent rendering.
    pub seconds: f64,
}

/// Options for rendering.
pub struct RenderOptions<'a> {
    /// Templates folder.
    pub templates: &'a Path,
    /// Output folder.
    pub out: &'a Path,
    /// Fonts the PDFs may use.
    pub fonts: &'a typst::Fonts,
    /// Fail on a character no font can print (instead of warning).
    pub strict: bool,
    /// PDF creation date.
    pub date: chrono::NaiveDateTime,
    /// Also write each report's Typst source beside its PDF.
    pub keep_typst: bool,
    /// Where progress goes (reports rendered).
    pub progress: &'a dyn crate::progress::Progress,
}

/// Render jobs to PDFs in parallel, writing each file atomically.
pub fn render(jobs: &[Job], opts: &RenderOptions) -> Result<Rendered, Error> {
    opts.progress
        .start(crate::progress::Stage::Rendering, jobs.len() as u64);
    let r = render_jobs(jobs, opts);
    opts.progress.finish(r.is_ok());
    r
}

pub(super) fn render_jobs(jobs: &[Job], opts: &RenderOptions) -> Result<Rendered, Error> {
    let started = std::time::Instant::now();
    let tera = templates(opts.templates)?;
    // Typst recurses deeply on long documents (a branch of many members): its threads get
    // large stacks (address space only; pages are used as the stack grows).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(256 << 20)
        .thread_name(|i| format!("render-{i}"))
        .build()
        .map_err(Error::Threads)?;
    let glyph_problems: Vec<GlyphProblem> = pool
        .install(|| {
            jobs.par_iter()
                .map(|j| check_glyphs(j, opts.fonts))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
    if opts.strict && !glyph_problems.is_empty() {
        return Err(Error::Glyphs(glyph_problems));
    }
    // Render all sources first: a broken template stops before any PDF is written (the
    // first broken report in job order is the one named).
    let sources: Vec<String> = pool
        .install(|| {
            jobs.par_iter()
                .map(|j| render_typst(&tera, j))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .collect::<Result<_, _>>()?;
    let compiler = typst::Compiler::new(opts.templates, opts.fonts);
    // One loop per thread takes the next report until none is left. (A parallel iterator
    // over the reports would let a thread that waits inside Typst's or the PDF writer's
    // own parallel work start a whole other report there, nesting reports on one stack.)
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<std::sync::Mutex<Option<Result<u64, Error>>>> =
        jobs.iter().map(|_| Default::default()).collect();
    let render_one = |job: &Job, src: &str| -> Result<u64, Error> {
        let path = opts.out.join(&job.file);
        let ident = format!("rulebook-{}-{}", job.kind, job.id);
        let pdf = compiler
            .pdf(src, &ident, opts.date)
            .map_err(|e| Error::Report {
                kind: job.kind,
                id: job.id.clone(),
                source: Box::new(e),
            })?;
        crate::output::write_bytes(&path, &pdf)?;
        if opts.keep_typst {
            crate::output::write_bytes(&path.with_extension("typ"), src.as_bytes())?;
        }
        opts.progress.advance(1);
        Ok(pdf.len() as u64)
    };
    pool.scope(|scope| {
        for _ in 0..pool.current_num_threads() {
            scope.spawn(|_| {
                use std::sync::atomic::Ordering;
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = render_one(job, &sources[i]);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    // The first failure in job order, else every file.
    let mut files = Vec::with_capacity(jobs.len());
    for (job, slot) in jobs.iter().zip(results) {
        let r = slot.into_inner().map_err(|_| Error::Panicked)?;
        match r {
            Some(Ok(bytes)) => files.push((job.file.clone(), bytes)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if failed.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Stopped);
    }
    Ok(Rendered {
        files,
        glyph_problems,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Characters of one field of a report's data that no loaded font can print.
#[derive(Debug, Clone, Serialize)]
pub struct GlyphProblem {
    /// The report (its kind and id).
    pub report: String,
    /// The field of the data holding the characters (`member.name`).
    pub field: String,
    /// The whole text of the field.
    pub text: String,
    /// The characters no font has, each once, in the order they appear in the text.
    pub characters: Vec<char>,
}

/// At most this many characters of a field's text are quoted in a glyph warning.
const QUOTED_CHARS: usize = 40;

impl std::fmt::Display for GlyphProblem {
    /// `member M3: field member.name "王𰀀" has 1 character no font can print: 𰀀 (U+30000)`.
    /// The text is quoted as Rust's `{:?}` shows it (invisible characters escaped) and cut
    /// after 40 characters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut quoted: String = self.text.chars().take(QUOTED_CHARS).collect();
        if self.text.chars().nth(QUOTED_CHARS).is_some() {
            quoted.push('…');
        }
        let listed: Vec<String> = self
            .characters
            .iter()
            .map(|c| format!("{} (U+{:04X})", c.escape_debug(), *c as u32))
            .collect();
        write!(
            f,
            "{}: field {} {:?} has {} character{} no font can print: {}",
            self.report,
            self.field,
            quoted,
            self.characters.len(),
            if self.characters.len() == 1 { "" } else { "s" },
            listed.join(", ")
        )
    }
}
