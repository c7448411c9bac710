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

/// Render a job's template to Typst source (a bundle's own template; its reports are
/// rendered by [`render_parts`]).
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

/// The Typst files a bundle includes: for each of its reports, the path the bundle's data
/// gives it (`bundle.parts[i].path`) and the report's source up to its shared appendix (the
/// bundle has the appendix once, at its end).
pub fn render_parts(tera: &tera::Tera, job: &Job) -> Result<Vec<(String, String)>, Error> {
    let paths = job
        .context
        .pointer("/bundle/parts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| p["path"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    (job.parts.iter().zip(paths))
        .map(|(part, path)| {
            let mut src = render_typst(tera, part)?;
            if let Some(at) = typst::shared_start(&src) {
                src.truncate(at);
            }
            Ok((path, src))
        })
        .collect()
}

/// What a report run produced.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Each PDF written (path under the output folder) and its size in bytes.
    pub files: Vec<(PathBuf, u64)>,
    /// Reports rendered (a bundle counts each report it holds).
    pub reports: usize,
    /// PDFs not rendered again because a previous run finished them (`--resume`), and the
    /// reports they hold.
    pub skipped: (usize, usize),
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
    /// What the PDFs are made from ([`run_key`]): each finished PDF is recorded with it in
    /// the output folder's journal (`.rulebook-resume`).
    pub run_key: &'a str,
    /// Skip PDFs the journal records as finished with the same key and whose file is still
    /// there, whole (`--resume`).
    pub resume: bool,
    /// About how many reports are prepared and rendered at a time: memory grows with it,
    /// not with the number of reports.
    pub batch: usize,
}

/// Render jobs to PDFs in parallel, writing each file atomically (all at once: for a
/// province, plan the run and use [`render_plan`]).
pub fn render(jobs: &[Job], opts: &RenderOptions) -> Result<Rendered, Error> {
    let total = jobs.iter().map(Job::reports).sum::<usize>();
    opts.progress
        .start(crate::progress::Stage::Rendering, total as u64);
    let r = Renderer::new(opts).and_then(|r| {
        let started = std::time::Instant::now();
        let mut out = Rendered::default();
        r.batch(jobs, &mut out)?;
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    });
    opts.progress.finish(r.is_ok());
    r
}

/// Render every PDF of `plan` in batches of about [`RenderOptions::batch`] reports: a
/// batch's data is made, rendered and dropped before the next, so memory stays flat however
/// many reports there are. Each template is tried on the first report of its kind before any
/// PDF is written, so a broken template stops the run at once.
pub fn render_plan(model: &Model, plan: &Plan, opts: &RenderOptions) -> Result<Rendered, Error> {
    opts.progress
        .start(crate::progress::Stage::Rendering, plan.reports() as u64);
    let r = Renderer::new(opts).and_then(|r| r.plan(model, plan));
    opts.progress.finish(r.is_ok());
    r
}

/// A key for everything a run's PDFs are made from: the policy set (its hash), the data
/// files (names, sizes and modification times), the evaluation date, the templates (their
/// contents; files of 1 MiB or more, such as fonts, by size and modification time), the
/// fonts, and this program's version. `--resume` keeps a PDF only if it was
/// made with the same key.
pub fn run_key(
    policy_hash: &str,
    data: &Path,
    as_of: NaiveDate,
    templates: &Path,
    fonts: &[PathBuf],
) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut feed = |s: &str| {
        h.update(s.as_bytes());
        h.update([0]);
    };
    feed(env!("CARGO_PKG_VERSION"));
    feed(policy_hash);
    feed(&as_of.to_string());
    for (dir, with_contents) in std::iter::once((data, false))
        .chain(std::iter::once((templates, true)))
        .chain(fonts.iter().map(|f| (f.as_path(), false)))
    {
        let mut files: Vec<_> = walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            // Hidden files and folders of the data folder (its `.rulebook-cache`) are not data.
            .filter_entry(|e| {
                with_contents || e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
            })
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .collect();
        files.sort_by(|a, b| a.path().cmp(b.path()));
        for e in files {
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            feed(&rel.to_string_lossy());
            let small = e.metadata().is_ok_and(|m| m.len() < 1 << 20);
            if with_contents && small {
                feed(&String::from_utf8_lossy(
                    &std::fs::read(e.path()).unwrap_or_default(),
                ));
            } else if let Ok(m) = e.metadata() {
                let modified = (m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                feed(&format!("{} {modified}", m.len()));
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The journal of finished PDFs in an output folder: one line per PDF written, `KEY\tBYTES\t
/// PATH`, appended in report order as each batch is finished, so an interrupted run can be
/// resumed.
struct Journal {
    file: std::sync::Mutex<std::fs::File>,
    key: String,
    /// PDFs a previous run with the same key finished, and their sizes.
    done: HashMap<PathBuf, u64>,
    out: PathBuf,
}

/// The journal's file name in the output folder.
pub const JOURNAL: &str = ".rulebook-resume";

impl Journal {
    fn open(out: &Path, key: &str, resume: bool) -> Result<Journal, Error> {
        let path = out.join(JOURNAL);
        let io = |source: std::io::Error| Error::Journal {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(out).map_err(io)?;
        let mut done = HashMap::new();
        if resume && let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let mut f = line.splitn(3, '\t');
                if let (Some(k), Some(n), Some(p)) = (f.next(), f.next(), f.next())
                    && k == key
                    && let Ok(n) = n.parse::<u64>()
                {
                    done.insert(PathBuf::from(p), n);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(resume)
            .write(true)
            .truncate(!resume)
            .open(&path)
            .map_err(io)?;
        Ok(Journal {
            file: std::sync::Mutex::new(file),
            key: key.to_string(),
            done,
            out: out.to_path_buf(),
        })
    }

    /// Whether `file` was finished by a run with the same key and is still there, whole.
    fn finished(&self, file: &Path) -> bool {
        self.done.get(file).is_some_and(|&n| {
            std::fs::metadata(self.out.join(file)).is_ok_and(|m| m.is_file() && m.len() == n)
        })
    }

    fn record(&self, file: &Path, bytes: u64) -> Result<(), Error> {
        use std::io::Write;
        let line = format!("{}\t{bytes}\t{}\n", self.key, file.display());
        let mut f = self.file.lock().map_err(|_| Error::Lock)?;
        f.write_all(line.as_bytes())
            .map_err(|source| Error::Journal {
                path: self.out.join(JOURNAL),
                source,
            })
    }
}

/// Templates, threads and the Typst compiler of one rendering run.
struct Renderer<'o> {
    opts: &'o RenderOptions<'o>,
    tera: tera::Tera,
    pool: rayon::ThreadPool,
    compiler: typst::Compiler,
    journal: Journal,
}

/// A job's generated Typst: its own source and, for a bundle, the files it includes.
struct Source {
    main: String,
    parts: Vec<(String, String)>,
}

impl<'o> Renderer<'o> {
    fn new(opts: &'o RenderOptions<'o>) -> Result<Renderer<'o>, Error> {
        let tera = templates(opts.templates)?;
        // Typst recurses deeply on long documents (a branch of many members): its threads
        // get large stacks (address space only; pages are used as the stack grows).
        let pool = rayon::ThreadPoolBuilder::new()
            .stack_size(256 << 20)
            .thread_name(|i| format!("render-{i}"))
            .build()
            .map_err(Error::Threads)?;
        Ok(Renderer {
            tera,
            pool,
            compiler: typst::Compiler::new(opts.templates, opts.fonts),
            journal: Journal::open(opts.out, opts.run_key, opts.resume)?,
            opts,
        })
    }

    fn source(&self, job: &Job) -> Result<Source, Error> {
        Ok(Source {
            main: render_typst(&self.tera, job)?,
            parts: render_parts(&self.tera, job)?,
        })
    }

    fn plan(&self, model: &Model, plan: &Plan) -> Result<Rendered, Error> {
        let started = std::time::Instant::now();
        // Try each template on the first report of its kind before writing anything.
        let mut kinds = Vec::new();
        for (i, item) in plan.items.iter().enumerate() {
            let kind = std::mem::discriminant(item);
            if !kinds.contains(&kind) {
                kinds.push(kind);
                self.source(&model.job(plan, i))?;
            }
        }
        let mut out = Rendered::default();
        let batch = self.opts.batch.max(1);
        let mut at = 0;
        while at < plan.items.len() {
            let (mut end, mut weight) = (at, 0);
            while end < plan.items.len() && (weight == 0 || weight < batch) {
                weight += plan.items[end].reports();
                end += 1;
            }
            let mut todo = Vec::with_capacity(end - at);
            for i in at..end {
                let file = model.item_file(&plan.items[i]);
                if self.journal.finished(&file) {
                    let n = plan.items[i].reports();
                    out.skipped.0 += 1;
                    out.skipped.1 += n;
                    self.opts.progress.advance(n as u64);
                } else {
                    todo.push(i);
                }
            }
            let jobs: Vec<Job> = self
                .pool
                .install(|| todo.par_iter().map(|&i| model.job(plan, i)).collect());
            self.batch(&jobs, &mut out)?;
            at = end;
        }
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Render `jobs` in parallel, adding what was written to `out`.
    fn batch(&self, jobs: &[Job], out: &mut Rendered) -> Result<(), Error> {
        let opts = self.opts;
        // A bundle's own data and each of its reports.
        let all: Vec<&Job> = (jobs.iter())
            .flat_map(|j| std::iter::once(j).chain(j.parts.iter()))
            .collect();
        let glyph_problems: Vec<GlyphProblem> = self
            .pool
            .install(|| {
                all.par_iter()
                    .map(|j| check_glyphs(j, opts.fonts))
                    .collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
            .collect();
        if opts.strict && !glyph_problems.is_empty() {
            return Err(Error::Glyphs(glyph_problems));
        }
        out.glyph_problems.extend(glyph_problems);
        // Render all sources of the batch first: a broken template stops before any of its
        // PDFs is written (the first broken report in job order is the one named).
        let sources: Vec<Source> = self
            .pool
            .install(|| jobs.par_iter().map(|j| self.source(j)).collect::<Vec<_>>())
            .into_iter()
            .collect::<Result<_, _>>()?;
        // One loop per thread takes the next report until none is left. (A parallel iterator
        // over the reports would let a thread that waits inside Typst's or the PDF writer's
        // own parallel work start a whole other report there, nesting reports on one stack.)
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<std::sync::Mutex<Option<Result<u64, Error>>>> =
            jobs.iter().map(|_| Default::default()).collect();
        self.pool.scope(|scope| {
            for _ in 0..self.pool.current_num_threads() {
                scope.spawn(|_| {
                    use std::sync::atomic::Ordering;
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let r = self.one(job, &sources[i]);
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
        for (job, slot) in jobs.iter().zip(results) {
            let r = slot.into_inner().map_err(|_| Error::Panicked)?;
            match r {
                Some(Ok(bytes)) => {
                    // Recorded in job order once the batch is done, so the journal is the
                    // same on every run (an interrupted batch is rendered again).
                    self.journal.record(&job.file, bytes)?;
                    out.files.push((job.file.clone(), bytes));
                    out.reports += job.reports();
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        if failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    /// Compile one job and write its PDF (and, with `keep_typst`, its source).
    fn one(&self, job: &Job, src: &Source) -> Result<u64, Error> {
        let opts = self.opts;
        let path = opts.out.join(&job.file);
        let ident = format!("rulebook-{}-{}", job.kind, job.id);
        let pdf = self
            .compiler
            .pdf(&src.main, &src.parts, &ident, opts.date)
            .map_err(|e| Error::Report {
                kind: job.kind,
                id: job.id.clone(),
                source: Box::new(e),
            })?;
        crate::output::write_bytes(&path, &pdf)?;
        if opts.keep_typst {
            let mut text = src.main.clone();
            for (file, part) in &src.parts {
                text.push_str(&format!("\n// ---- {file} ----\n{part}"));
            }
            crate::output::write_bytes(&path.with_extension("typ"), text.as_bytes())?;
        }
        opts.progress.advance(job.reports() as u64);
        Ok(pdf.len() as u64)
    }
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
