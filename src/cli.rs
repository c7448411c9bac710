//! The command-line interface: `check`, `eval` and `gen`. Each command is a thin layer over
//! the library; exit codes: 0 success, 1 policy errors or bad usage, 2 data that cannot be
//! loaded.

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use rulebook::data::cache::{self, Cache};
use rulebook::data::{self, Dataset, Encoding, LoadOptions};
use rulebook::findings::{FindingWriter, Format, Summary, render_summary};
use rulebook::policy::{self, PolicySet};
use rulebook::progress::{Progress, Reporter, Stage};
use rulebook::{eval, r#gen, output, report};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rulebook",
    version,
    about = "Rules-and-reporting engine driven by declarative policy files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a policy set: TOML shape, names, dates, versions, Rhai; exit 1 on errors.
    Check(CheckArgs),
    /// Evaluate a dataset and write findings.
    Eval(EvalArgs),
    /// Explain a subject's verdicts: versions, parameters, aggregates with their rows, expressions.
    Explain(ExplainArgs),
    /// Impact of a policy change: every subject whose verdict differs between two policy sets.
    Diff(DiffArgs),
    /// Run the policy tests in `policies/tests/*.toml` and report coverage; exit 1 on failure.
    Test(TestArgs),
    /// Evaluate, grade, and render PDF assessment reports (with the findings beside them).
    Report(ReportArgs),
    /// Generate a synthetic dataset (data contract v1) for benchmarks.
    Gen(GenArgs),
    /// Print the JSON Schema of a kind of policy file (editor completion and validation), or of
    /// the data report templates receive.
    Schema(SchemaArgs),
    /// Run the language server for policy files over stdio (for editors).
    Lsp,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which policy file the schema is for (`report`: the report templates' data).
    #[arg(long, value_enum, default_value_t = CliSchemaKind::Directive)]
    pub kind: CliSchemaKind,
    /// Write all three policy file schemas (policy, directive, assessment) into this folder
    /// instead.
    #[arg(long, value_name = "DIR", conflicts_with = "kind")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Templates folder (Tera templates producing Typst, `lib.typ`, `fonts/`).
    #[arg(long, default_value = "report-templates")]
    pub templates: PathBuf,
    /// Output folder for the PDFs and findings.
    #[arg(long, default_value = "out/reports")]
    pub out: PathBuf,
    /// Which reports to render.
    #[arg(long, value_enum, default_value_t = CliLevel::All)]
    pub level: CliLevel,
    /// Render only the reports of this part of the data, KIND:ID with KIND one of branch,
    /// community, district, member (repeatable; their union). The summary covers the scope
    /// and says so; evaluation still reads the whole dataset.
    #[arg(long, value_name = "KIND:ID")]
    pub scope: Vec<report::ScopeSpec>,
    /// Gather member forms into one PDF per unit branch (headed by the branch report) or per
    /// community (headed by the community report), with a table of contents and bookmarks.
    #[arg(long, value_enum)]
    pub bundle: Option<CliBundle>,
    /// Skip reports a previous run into the same folder finished with the same policy set,
    /// data, evaluation date and templates (recorded in the folder's `.rulebook-resume`).
    #[arg(long)]
    pub resume: bool,
    /// About how many reports are prepared and rendered at a time (memory grows with it).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub batch: usize,
    /// Fail when a character in the data cannot be printed with the loaded fonts.
    #[arg(long)]
    pub strict: bool,
    /// More folders with TTF/OTF fonts (system fonts are never scanned).
    #[arg(long)]
    pub font_path: Vec<PathBuf>,
    /// Also write each report's Typst source (`.typ`) beside its PDF.
    #[arg(long)]
    pub keep_typst: bool,
    /// Which findings files to write beside the reports (`findings.json`, `.jsonl`, `.csv`,
    /// `.xlsx`: the workbook evaluators work in); `none` writes none (a province's findings
    /// run to gigabytes).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["json", "csv"])]
    pub findings: Vec<FindingsFile>,
    /// Print how long each stage took (to stderr).
    #[arg(long)]
    pub timings: bool,
}

/// Wall and CPU seconds of consecutive stages, for `--timings`.
struct Stages {
    start: std::time::Instant,
    last: (f64, Option<f64>),
    /// Each stage: name, seconds, CPU seconds and the peak memory at its end (MiB).
    done: Vec<(&'static str, f64, Option<f64>, Option<f64>)>,
}

impl Stages {
    fn new() -> Stages {
        Stages {
            start: std::time::Instant::now(),
            last: (0.0, Some(0.0)),
            done: Vec::new(),
        }
    }

    /// The stage `name` ends now.
    fn mark(&mut self, name: &'static str) {
        let now = (self.start.elapsed().as_secs_f64(), cpu_seconds());
        let cpu = match (self.last.1, now.1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        self.done.push((name, now.0 - self.last.0, cpu, peak_mib()));
        self.last = now;
    }

    /// The table `--timings` prints: stage, seconds, CPU seconds, peak memory so far, and
    /// the total.
    fn table(&self) -> String {
        let mut out = String::from("stage               seconds    cpu s  peak MiB\n");
        let cpu = |c: Option<f64>| c.map_or(format!("{:>8}", "-"), |c| format!("{c:>8.2}"));
        let peak = |p: Option<f64>| p.map_or(format!("{:>9}", "-"), |p| format!("{p:>9.0}"));
        for (name, wall, c, p) in &self.done {
            out.push_str(&format!(
                "{name:<18} {wall:>8.2} {} {}\n",
                cpu(*c),
                peak(*p)
            ));
        }
        out.push_str(&format!(
            "{:<18} {:>8.2} {} {}\n",
            "total",
            self.last.0,
            cpu(self.last.1),
            peak(self.done.last().and_then(|d| d.3))
        ));
        out
    }
}

/// A findings file `report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindingsFile {
    Json,
    Jsonl,
    Csv,
    /// The findings workbook for Excel and WPS (`findings.xlsx`).
    Xlsx,
    None,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy folder (also accepted as `--policies`).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Policy folder.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Explain a diagnostic code (`RB0201`) with an example and the fix.
    #[arg(long, value_name = "CODE")]
    pub explain: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The member or organization id.
    #[arg(long)]
    pub subject: String,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// `text` for a terminal, `json` for tools.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The old policy set: a folder, or a git revision of the policies folder (`main`, `HEAD~1`).
    #[arg(long)]
    pub base: String,
    /// `text` for a terminal, `markdown` for a review comment, `json` for tools.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Exit 3 when any verdict changes (for CI).
    #[arg(long)]
    pub fail_on_change: bool,
}

/// A clap value enum standing for a library enum of the same variants (the library does not
/// depend on clap); the doc comments are the help text of each value.
macro_rules! cli_enum {
    ($(#[$m:meta])* $name:ident => $lib:ty { $($(#[$vm:meta])* $v:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name { $($(#[$vm])* $v),* }

        impl From<$name> for $lib {
            fn from(x: $name) -> Self {
                match x { $($name::$v => <$lib>::$v),* }
            }
        }
    };
}

cli_enum!(
    /// How to decode CSV bytes.
    CliEncoding => Encoding {
        /// Valid UTF-8 is UTF-8; otherwise GB18030 (which covers GBK and GB2312)
        Auto,
        Utf8,
        Gb18030,
    }
);
cli_enum!(CliLevel => report::Level { Member, Branch, Community, Summary, All });
cli_enum!(
    /// What `--bundle` gathers into one PDF.
    CliBundle => report::BundleKind {
        /// One PDF per unit branch: the branch report, then its members' forms
        Branch,
        /// One PDF per community: the community report, then its residents' forms
        Community,
    }
);
/// The findings format of `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliFormat {
    Json,
    Jsonl,
    Csv,
    /// The findings workbook for Excel and WPS (needs --out)
    Xlsx,
}

impl CliFormat {
    /// The findings format of the text formats; `None` for the workbook.
    fn text(self) -> Option<Format> {
        match self {
            CliFormat::Json => Some(Format::Json),
            CliFormat::Jsonl => Some(Format::Jsonl),
            CliFormat::Csv => Some(Format::Csv),
            CliFormat::Xlsx => None,
        }
    }
}
/// Which schema `rulebook schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliSchemaKind {
    /// `policy.toml`, the manifest.
    Manifest,
    /// A file in `directives/`.
    Directive,
    /// `assessment.toml`, the grades.
    Assessment,
    /// The data report templates receive (`report-templates/context.schema.json`).
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Policy folder (tests are in its `tests/` folder).
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Fail when a rule has no test.
    #[arg(long)]
    pub require_coverage: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset folder: one CSV per table, or XLSX sheets named like tables.
    #[arg(long)]
    pub data: PathBuf,
    /// Policy folder.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Evaluation date (YYYY-MM-DD); defaults to the latest date in the data.
    #[arg(long, value_parser = parse_as_of)]
    pub as_of: Option<NaiveDate>,
    /// How to decode CSV files.
    #[arg(long, value_enum, default_value_t = CliEncoding::Auto)]
    pub encoding: CliEncoding,
    /// Write the rejected rows (file, line, column, reason) to this CSV file.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Keep the columnar cache of the loaded data (Arrow IPC files) in this folder rather
    /// than in `.rulebook-cache` inside the data folder.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Read the data files even when a cache of them is current, and write no cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

impl DataArgs {
    /// Where the data's columnar cache is kept, as the options ask.
    pub fn cache(&self) -> Cache {
        match (&self.cache, self.no_cache) {
            (_, true) => Cache::Off,
            (Some(dir), false) => Cache::In(dir.clone()),
            (None, false) => Cache::Beside,
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Findings format; without --out and --format only the summary is printed.
    #[arg(long, value_enum)]
    pub format: Option<CliFormat>,
    /// Write findings to this file (written atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print how long each stage took (to stderr).
    #[arg(long)]
    pub timings: bool,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Number of members.
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Calendar year of the data.
    #[arg(long, default_value_t = 2020)]
    pub year: i32,
}

fn parse_as_of(s: &str) -> Result<NaiveDate, String> {
    rulebook::dates::parse_date(s).ok_or_else(|| format!("`{s}` is not a date; write YYYY-MM-DD"))
}

/// Run the CLI with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run a parsed command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(a) => check(&a),
        Command::Eval(a) => eval_cmd(&a),
        Command::Test(a) => test_cmd(&a),
        Command::Explain(a) => explain_cmd(&a),
        Command::Diff(a) => diff_cmd(&a),
        Command::Report(a) => report_cmd(&a),
        Command::Gen(a) => gen_cmd(&a),
        Command::Schema(a) => schema_cmd(&a),
        Command::Lsp => rulebook::lsp::run()
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| anyhow::anyhow!(e)),
    }
}

/// Load a policy set, printing diagnostics; `None` when it has errors.
pub fn load_policies(dir: &Path, quiet: bool) -> Option<PolicySet> {
    match policy::load(dir) {
        Ok(set) => {
            if !quiet && !set.warnings.is_empty() {
                eprint!("{}", set.render_warnings());
            }
            Some(set)
        }
        Err(fail) => {
            eprint!("{}", fail.render());
            None
        }
    }
}

/// Rules no test case expects a verdict of (read from `tests/*.toml` without running them).
fn untested_rules(set: &PolicySet) -> Vec<String> {
    let mut tested = std::collections::BTreeSet::new();
    for f in rulebook::policytest::test_files(&set.root) {
        if let Ok(tf) = std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                toml::from_str::<rulebook::policytest::TestFile>(&t).map_err(|e| e.to_string())
            })
        {
            for c in &tf.cases {
                for e in &c.expect {
                    tested.insert(e.rule.clone());
                }
            }
        }
    }
    let mut ids: Vec<String> = set
        .rules
        .iter()
        .map(|r| r.id.clone())
        .filter(|r| !tested.contains(r))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn check(a: &CheckArgs) -> Result<ExitCode> {
    if let Some(code) = &a.explain {
        return Ok(match policy::codes::explain(code) {
            Some(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no diagnostic code `{code}`; codes are RB0001 … RB0504");
                ExitCode::from(1)
            }
        });
    }
    let dir = a.dir.as_ref().unwrap_or(&a.policies);
    match policy::load(dir) {
        Ok(set) => {
            print!("{}", set.render_warnings());
            let untested = untested_rules(&set);
            if !untested.is_empty() {
                print!(
                    "{}",
                    rulebook::diag::Diag::warning(
                        rulebook::diag::Code::RB0503,
                        format!("rules with no test: {}", untested.join(", "))
                    )
                    .help(
                        "add cases to policies/tests/*.toml; see `rulebook check --explain RB0503`"
                    )
                    .render(&set.sources)
                );
            }
            let versions = set.rules.len();
            let mut ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
            ids.sort();
            ids.dedup();
            let assumptions = set
                .params
                .values()
                .filter(|p| p.basis == policy::model::Basis::Assumption)
                .count();
            println!(
                "ok: {} {} ({}), hash {}: {} directives, {} rules ({} versions), {} parameters ({} assumptions), {} aggregates; {} warning(s)",
                set.name,
                set.version,
                set.title,
                set.short_hash(),
                set.directives.len(),
                ids.len(),
                versions,
                set.params.len(),
                assumptions,
                set.aggregates.len(),
                set.warnings.len() + usize::from(!untested.is_empty())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fail) => {
            print!("{}", fail.render());
            Ok(ExitCode::from(1))
        }
    }
}

fn diff_cmd(a: &DiffArgs) -> Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let base_dir = match rulebook::diff::resolve_base(&a.base, &a.data.policies, tmp.path()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            return Ok(ExitCode::from(1));
        }
    };
    let Some(new) = load_policies(&a.data.policies, true) else {
        return Ok(ExitCode::from(1));
    };
    let Some(old) = load_policies(&base_dir, true) else {
        eprintln!("(the base policy set `{}` does not load)", a.base);
        return Ok(ExitCode::from(1));
    };
    // The data is read with each policy set's schema (they may declare different tables);
    // once when the schemas are the same.
    let cache = a.data.cache();
    let ds = match load_data(
        &a.data.data,
        &new.schema,
        a.data.encoding.into(),
        &cache,
        "",
        true,
    ) {
        Ok((ds, _)) => ds,
        Err(code) => return Ok(code),
    };
    let ds_old = if old.schema.same_as(&new.schema) {
        None
    } else {
        match load_data(
            &a.data.data,
            &old.schema,
            a.data.encoding.into(),
            &cache,
            " (base policy set)",
            true,
        ) {
            Ok((ds, _)) => Some(ds),
            Err(code) => return Ok(code),
        }
    };
    let as_of = a.data.as_of.or_else(|| ds.latest_date());
    let run_old = eval::prepare(&old, ds_old.as_ref().unwrap_or(&ds), as_of)?;
    // What both sets compute alike is computed once (`eval::prepare_against`).
    let run_new = eval::prepare_against(&new, &ds, as_of, &run_old)?;
    let (changes, compared) = rulebook::diff::compare_runs(&run_old, &run_new)?;
    let impact = rulebook::diff::Impact::new(
        format!("{} {} ({})", a.base, old.version, old.short_hash()),
        format!(
            "{} {} ({})",
            a.data.policies.display(),
            new.version,
            new.short_hash()
        ),
        compared,
        changes,
    );
    match a.format {
        DiffFormat::Text => print!("{}", impact.render_text()),
        DiffFormat::Markdown => print!("{}", impact.render_markdown()),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&impact)?),
    }
    if a.fail_on_change && !impact.changes.is_empty() {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn explain_cmd(a: &ExplainArgs) -> Result<ExitCode> {
    let args = DataArgs {
        quiet: true,
        ..a.data.clone()
    };
    // Only the rows that can matter to the subject, unless every reject is to be written.
    let loaded = match &args.rejects {
        Some(_) => load_all(&args),
        None => load_for_subject(&args, &a.subject),
    };
    let (set, ds) = match loaded {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    // Only the subject's kind, and only its aggregates.
    let run = eval::prepare_subject(&set, &ds, a.data.as_of, &a.subject)?;
    let Some((run, e)) = run.and_then(|run| {
        let e = run.explain(&a.subject, a.rule.as_deref())?;
        Some((run, e))
    }) else {
        eprintln!(
            "error: no member or organization `{}` in {}",
            a.subject,
            a.data.data.display()
        );
        return Ok(ExitCode::from(1));
    };
    if let Some(r) = &a.rule
        && e.rules.is_empty()
    {
        eprintln!(
            "error: rule `{r}` is not in force on {} for {}",
            run.as_of, a.subject
        );
        return Ok(ExitCode::from(1));
    }
    match a.format {
        ExplainFormat::Text => print!("{}", eval::explain::render(&e)),
        ExplainFormat::Json => println!("{}", serde_json::to_string_pretty(&e)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn test_cmd(a: &TestArgs) -> Result<ExitCode> {
    let Some(set) = load_policies(&a.policies, true) else {
        return Ok(ExitCode::from(1));
    };
    let files = rulebook::policytest::test_files(&a.policies);
    if files.is_empty() {
        eprintln!("no test files in {}", a.policies.join("tests").display());
    }
    let outcome = rulebook::policytest::run(&set, &files)?;
    print!("{}", rulebook::policytest::render(&outcome, &set));
    let uncovered = !outcome.untested_rules(&set).is_empty();
    if !outcome.failures.is_empty()
        || !outcome.broken.is_empty()
        || (a.require_coverage && uncovered)
    {
        if a.require_coverage && uncovered {
            println!("--require-coverage: some rules have no test");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Load policies and data, reporting problems; `Err(code)` when the run cannot go on.
pub fn load_all(a: &DataArgs) -> std::result::Result<(PolicySet, Dataset), ExitCode> {
    load_all_cached(a).map(|(set, ds, _)| (set, ds))
}

/// [`load_all`], also telling what the data cache did.
fn load_all_cached(
    a: &DataArgs,
) -> std::result::Result<(PolicySet, Dataset, cache::Outcome), ExitCode> {
    let Some(set) = load_policies(&a.policies, a.quiet) else {
        return Err(ExitCode::from(1));
    };
    let (ds, outcome) = load_data(
        &a.data,
        &set.schema,
        a.encoding.into(),
        &a.cache(),
        "",
        a.quiet,
    )?;
    if !a.quiet {
        report_data_problems(&ds);
    }
    if let Some(path) = &a.rejects
        && let Err(e) = write_rejects(path, &ds)
    {
        eprintln!("error: {e:#}");
        return Err(ExitCode::from(1));
    }
    Ok((set, ds, outcome))
}

/// Load policies and the data for one subject ([`eval::focus::load_for_subject`]), with the
/// file problems [`load_all`] prints; `Err(code)` when the run cannot go on.
fn load_for_subject(a: &DataArgs, id: &str) -> std::result::Result<(PolicySet, Dataset), ExitCode> {
    let Some(set) = load_policies(&a.policies, a.quiet) else {
        return Err(ExitCode::from(1));
    };
    let opts = LoadOptions {
        encoding: a.encoding.into(),
        progress: bars(show_progress(a.quiet)),
        ..Default::default()
    };
    // A current cache reads the subject's rows faster than a focused load of the files.
    let ds = match eval::focus::cached_for_subject(&a.data, &set, &opts, &a.cache(), id) {
        Some(ds) => ds,
        None => eval::focus::load_for_subject(&a.data, &set, &opts, id, a.as_of.is_none())
            .map_err(|errors| data_errors(&errors, ""))?,
    };
    if !a.quiet {
        report_data_problems(&ds);
    }
    Ok((set, ds))
}

/// Progress bars go to stderr when it is a terminal, unless `--quiet`.
pub fn show_progress(quiet: bool) -> bool {
    !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// The library's progress as bars on stderr (`show`), or nowhere.
fn bars(show: bool) -> Reporter {
    if show {
        Reporter(std::sync::Arc::new(Bars::default()))
    } else {
        Reporter::default()
    }
}

/// Draws the library's progress with indicatif, one bar per stage.
#[derive(Default)]
struct Bars(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Bars {
    fn start(&self, stage: Stage, total: u64) {
        let template = match stage {
            Stage::Loading => {
                "loading   {bar:40} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {elapsed}"
            }
            Stage::Rendering => {
                "{spinner} rendering {pos}/{len} reports [{bar:30}] {per_sec} {eta}"
            }
        };
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if let Ok(mut b) = self.0.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(b) = self.0.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(n);
        }
    }

    fn finish(&self, ok: bool) {
        if let Ok(mut b) = self.0.lock()
            && let Some(b) = b.take()
        {
            if ok {
                b.finish_and_clear();
            } else {
                b.abandon();
            }
        }
    }
}

/// Load a dataset through its cache, printing file problems (and a warning when a damaged
/// cache was rebuilt, unless `quiet`); `Err(exit code 2)` when it cannot be loaded.
fn load_data(
    dir: &Path,
    schema: &policy::Schema,
    encoding: Encoding,
    cache: &Cache,
    what: &str,
    quiet: bool,
) -> std::result::Result<(Dataset, cache::Outcome), ExitCode> {
    let opts = LoadOptions {
        encoding,
        progress: bars(show_progress(quiet)),
        ..Default::default()
    };
    let (ds, outcome) = cache::load_cached(dir, schema, &opts, cache)
        .map_err(|errors| data_errors(&errors, what))?;
    if let cache::Outcome::Repaired(why) = &outcome
        && !quiet
    {
        eprintln!("warning: the data cache was damaged and has been rebuilt ({why})");
    }
    Ok((ds, outcome))
}

/// Print the problems that stop a dataset from loading; the exit code (2).
fn data_errors(errors: &data::Error, what: &str) -> ExitCode {
    for e in errors {
        eprintln!("error{what}: {}: {}", e.file, e.message);
    }
    eprintln!(
        "the data cannot be evaluated: {} file problem(s)",
        errors.len()
    );
    ExitCode::from(2)
}

fn report_data_problems(ds: &Dataset) {
    const SHOW: usize = 20;
    for w in ds.warnings.iter().take(SHOW) {
        match w.line {
            Some(l) => eprintln!("warning: {}:{l}: {}", w.file, w.message),
            None => eprintln!("warning: {}: {}", w.file, w.message),
        }
    }
    if ds.warnings.len() > SHOW {
        eprintln!("warning: … and {} more warnings", ds.warnings.len() - SHOW);
    }
    for r in ds.rejects.iter().take(SHOW) {
        let col = r
            .column
            .as_deref()
            .map(|c| format!(" column {c}:"))
            .unwrap_or_default();
        eprintln!("rejected: {}:{}:{col} {}", r.file, r.line, r.reason);
    }
    if ds.rejects.len() > SHOW {
        eprintln!(
            "rejected: … and {} more rows; write them all with --rejects FILE",
            ds.rejects.len() - SHOW
        );
    }
}

/// Write rejected rows as CSV: table, file, line, column, value, reason, row.
pub fn write_rejects(path: &Path, ds: &Dataset) -> Result<()> {
    output::write_atomic(path, |w| -> Result<()> {
        let mut c = csv::Writer::from_writer(w);
        c.write_record(["table", "file", "line", "column", "value", "reason", "row"])?;
        for r in &ds.rejects {
            let line = r.line.to_string();
            let raw = r.raw.join(",");
            c.write_record([
                r.table.as_str(),
                r.file.as_str(),
                line.as_str(),
                r.column.as_deref().unwrap_or(""),
                r.value.as_deref().unwrap_or(""),
                r.reason.as_str(),
                raw.as_str(),
            ])?;
        }
        c.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing rejects to {}", path.display()))
}

/// The most memory this process has held so far (peak resident set, MiB), where the system
/// tells (Linux); for `--timings`.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user and system, all threads) this process has used so far, where the
/// system tells (Linux); for `--timings` on a busy machine.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks of 1/100 s (USER_HZ).
    Some((utime + stime) / 100.0)
}

fn eval_cmd(a: &EvalArgs) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let (set, ds, cached) = match load_all_cached(&a.data) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let t_load = t0.elapsed();
    let cpu_load = cpu_seconds();
    let peak_load = peak_mib();
    let as_of = match a.data.as_of.or_else(|| ds.latest_date()) {
        Some(d) => d,
        None => anyhow::bail!(
            "the data has no dates, so --as-of cannot default to the latest one; give --as-of YYYY-MM-DD"
        ),
    };
    // Evaluation has no natural unit to count in its first part (aggregates), so it shows a
    // spinner with the elapsed time.
    let spinner = spinner(a.data.quiet, "evaluating");
    let run = eval::prepare(&set, &ds, Some(as_of))?;
    if !a.data.quiet {
        for n in &run.waiver_notes {
            eprintln!("warning: {n}");
        }
    }
    let t_prepare = t0.elapsed();
    let cpu_prepare = cpu_seconds();
    let peak_prepare = peak_mib();
    let mut summary = Summary::default();
    let chosen = a.format.unwrap_or(
        match a
            .out
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
        {
            Some("csv") => CliFormat::Csv,
            Some("jsonl") => CliFormat::Jsonl,
            Some("xlsx") => CliFormat::Xlsx,
            _ => CliFormat::Json,
        },
    );
    let format = chosen.text().unwrap_or(Format::Json);
    let to_stdout = a.out.is_none() && a.format.is_some();
    if chosen == CliFormat::Xlsx {
        let Some(out) = &a.out else {
            anyhow::bail!("--format xlsx writes a workbook: give --out FILE.xlsx");
        };
        write_workbook(&run, out, &mut summary)?;
    } else if let Some(out) = &a.out {
        output::write_atomic(out, |w| write_findings(&run, w, format, &mut summary))?;
    } else if to_stdout {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        write_findings(&run, &mut lock, format, &mut summary)?;
    } else {
        run.stream(None, &mut summary, None, |_, _| Ok(()))?;
    }
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let t_rules = t0.elapsed();
    let cpu_rules = cpu_seconds();
    let peak_rules = peak_mib();
    if a.timings {
        let rows = ds.total_read();
        let cpu = |from: Option<f64>, to: Option<f64>| match (from, to) {
            (Some(f), Some(t)) => format!("{:>8.2}", t - f),
            _ => format!("{:>8}", "-"),
        };
        let peak = |p: Option<f64>| p.map_or(format!("{:>9}", "-"), |p| format!("{p:>9.0}"));
        eprintln!("stage               seconds    cpu s  peak MiB      rows/s");
        eprintln!(
            "load               {:>8.2} {} {} {:>11.0}",
            t_load.as_secs_f64(),
            cpu(Some(0.0), cpu_load),
            peak(peak_load),
            rows as f64 / t_load.as_secs_f64()
        );
        eprintln!(
            "aggregates         {:>8.2} {} {} {:>11.0}",
            (t_prepare - t_load).as_secs_f64(),
            cpu(cpu_load, cpu_prepare),
            peak(peak_prepare),
            rows as f64 / (t_prepare - t_load).as_secs_f64()
        );
        eprintln!(
            "rules+output       {:>8.2} {} {} {:>11.0} findings/s",
            (t_rules - t_prepare).as_secs_f64(),
            cpu(cpu_prepare, cpu_rules),
            peak(peak_rules),
            summary.total as f64 / (t_rules - t_prepare).as_secs_f64()
        );
        eprintln!(
            "total              {:>8.2} {} {} {:>11.0}",
            t_rules.as_secs_f64(),
            cpu(Some(0.0), cpu_rules),
            peak(peak_rules),
            rows as f64 / t_rules.as_secs_f64()
        );
        eprintln!("cache: {cached}");
    }
    if !a.data.quiet {
        let text = render_summary(
            &summary,
            &ds.stats,
            &run.as_of.to_string(),
            &format!("{} {} ({})", set.name, set.version, set.short_hash()),
            &run.scope_notes(),
        );
        if to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
            if let Some(out) = &a.out {
                println!("findings written to {}", out.display());
            } else {
                println!("(write findings with --out FILE or --format json|jsonl|csv|xlsx)");
            }
        }
    }
    std::io::stdout().flush().ok();
    Ok(ExitCode::SUCCESS)
}

/// A spinner with the elapsed time, when progress is shown.
fn spinner(quiet: bool, what: &str) -> Option<indicatif::ProgressBar> {
    show_progress(quiet).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!("{{spinner}} {what} {{elapsed}}"))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    })
}

/// The PDF creation date: `SOURCE_DATE_EPOCH` if set, else the evaluation date at midnight.
fn report_date(as_of: NaiveDate) -> chrono::NaiveDateTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|d| d.naive_utc())
        .unwrap_or_else(|| as_of.and_time(chrono::NaiveTime::MIN))
}

fn report_cmd(a: &ReportArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut stages = Stages::new();
    let (set, ds, cached) = match load_all_cached(&a.data) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    stages.mark("load");
    let run = eval::prepare(&set, &ds, a.data.as_of)?;
    stages.mark("aggregates");
    if !a.data.quiet {
        for n in &run.waiver_notes {
            eprintln!("warning: {n}");
        }
    }
    if a.findings.contains(&FindingsFile::None) && a.findings.len() > 1 {
        anyhow::bail!("--findings none cannot be combined with other formats");
    }
    // The first pass keeps every finding's status for grading and summaries; each findings
    // file is streamed straight to disk.
    let spinner = spinner(a.data.quiet, "evaluating and grading");
    let mut summary = Summary::default();
    let mut outcomes = eval::Outcomes::default();
    let mut written = Vec::new();
    for file in &a.findings {
        let (name, format) = match file {
            FindingsFile::Json => ("findings.json", Format::Json),
            FindingsFile::Jsonl => ("findings.jsonl", Format::Jsonl),
            FindingsFile::Csv => ("findings.csv", Format::Csv),
            FindingsFile::Xlsx | FindingsFile::None => continue,
        };
        if written.contains(&name) {
            continue;
        }
        let path = a.out.join(name);
        let first = written.is_empty();
        output::write_atomic(&path, |w| -> Result<()> {
            let mut fw = FindingWriter::new(w, format)?;
            let mut again = Summary::default();
            let (summary, outcomes) = if first {
                (&mut summary, Some(&mut outcomes))
            } else {
                (&mut again, None)
            };
            run.stream(Some(format), summary, outcomes, |runs, n| {
                fw.write_runs(runs, n)?;
                Ok(())
            })?;
            fw.finish()?;
            Ok(())
        })?;
        written.push(name);
    }
    if written.is_empty() {
        run.stream(None, &mut summary, Some(&mut outcomes), |_, _| Ok(()))?;
    }
    stages.mark(if written.is_empty() {
        "rules"
    } else {
        "rules+findings"
    });
    if a.findings.contains(&FindingsFile::Xlsx) {
        let name = "findings.xlsx";
        write_workbook(&run, &a.out.join(name), &mut Summary::default())?;
        written.push(name);
        stages.mark("workbook");
    }
    let model = report::Model::new(&run, &outcomes);
    stages.mark("grading");
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    for e in &model.grade_errors {
        eprintln!("warning: grading: {e}");
    }
    if model.grade_error_count > model.grade_errors.len() {
        eprintln!(
            "warning: grading: {} more problems like these",
            model.grade_error_count - model.grade_errors.len()
        );
    }
    let plan = model.plan(&report::PlanOptions {
        level: a.level.into(),
        scope: &a.scope,
        bundle: a.bundle.map(Into::into),
    })?;
    stages.mark("planning");
    let mut font_dirs = vec![a.templates.join("fonts")];
    font_dirs.extend(a.font_path.iter().cloned());
    let fonts = report::typst::Fonts::load(&font_dirs)?;
    let progress = bars(show_progress(a.data.quiet));
    let run_key = report::run_key(&set.hash, &a.data.data, run.as_of, &a.templates, &font_dirs);
    let opts = report::RenderOptions {
        templates: &a.templates,
        out: &a.out,
        fonts: &fonts,
        strict: a.strict,
        date: report_date(run.as_of),
        keep_typst: a.keep_typst,
        progress: &*progress,
        run_key: &run_key,
        resume: a.resume,
        batch: a.batch,
    };
    let rendered = match report::render_plan(&model, &plan, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            return Ok(ExitCode::from(1));
        }
    };
    stages.mark("rendering");
    if a.timings {
        eprint!("{}", stages.table());
        eprintln!("cache: {cached}");
        eprintln!(
            "{} reports in {} PDFs in {:.2}s: {:.1} reports/s",
            rendered.reports,
            rendered.files.len(),
            rendered.seconds,
            rendered.reports as f64 / rendered.seconds.max(1e-9)
        );
    }
    for g in &rendered.glyph_problems {
        eprintln!("warning: {g}");
    }
    if !a.data.quiet {
        print!(
            "{}",
            render_summary(
                &summary,
                &ds.stats,
                &run.as_of.to_string(),
                &format!("{} {} ({})", set.name, set.version, set.short_hash()),
                &run.scope_notes(),
            )
        );
        print!("{}", rendered_summary(&rendered, &a.out, started));
        if !written.is_empty() {
            let files: Vec<String> = written
                .iter()
                .map(|n| a.out.join(n).display().to_string())
                .collect();
            println!("findings written to {}", files.join(" and "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `report` says it rendered: PDFs by folder, reports, size and speed.
fn rendered_summary(r: &report::Rendered, out: &Path, started: std::time::Instant) -> String {
    let bytes: u64 = r.files.iter().map(|(_, b)| b).sum();
    let mut by_folder: std::collections::BTreeMap<String, usize> = Default::default();
    for (f, _) in &r.files {
        let folder = match f.parent().and_then(|p| p.to_str()) {
            Some("") | None => "summary".to_string(),
            Some(p) => p.to_string(),
        };
        *by_folder.entry(folder).or_default() += 1;
    }
    let kinds: Vec<String> = by_folder.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut text = format!(
        "{} PDF reports ({}) in {}: {:.1} MB, {:.2}s rendering ({:.1} reports/s), {:.2}s in all\n",
        r.files.len(),
        kinds.join(", "),
        out.display(),
        bytes as f64 / 1e6,
        r.seconds,
        r.reports as f64 / r.seconds.max(1e-9),
        started.elapsed().as_secs_f64()
    );
    if r.skipped.0 > 0 {
        text.push_str(&format!(
            "{} PDFs ({} reports) already finished by an earlier run (--resume) were kept\n",
            r.skipped.0, r.skipped.1
        ));
    }
    text
}

/// Write the findings workbook of `run` to `path` (atomically; the sheets' temporary files
/// beside it), counting the findings in `summary`. Created at [`report_date`].
fn write_workbook(run: &eval::Run, path: &Path, summary: &mut Summary) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let opts = report::workbook::Options {
        tempdir: Some(dir),
        ..report::workbook::Options::new(report_date(run.as_of))
    };
    output::write_atomic_send(path, |w| -> Result<()> {
        report::workbook::write(run, w, &opts, summary)?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Stream every finding of `run` to `w` (encoded in parallel), counting them in `summary`.
fn write_findings(
    run: &eval::Run,
    w: &mut dyn Write,
    format: Format,
    summary: &mut Summary,
) -> Result<()> {
    let mut fw = FindingWriter::new(w, format)?;
    run.stream(Some(format), summary, None, |runs, n| {
        fw.write_runs(runs, n)?;
        Ok(())
    })?;
    fw.finish()?;
    Ok(())
}

fn gen_cmd(a: &GenArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let report = r#gen::generate(&r#gen::GenOptions {
        members: a.members,
        seed: a.seed,
        out: a.out.clone(),
        year: a.year,
    })?;
    let mut total = 0;
    for (table, rows, bytes) in &report.tables {
        println!("{table:<20} {rows:>12} rows {bytes:>14} bytes");
        total += bytes;
    }
    println!(
        "wrote {} bytes to {} in {:.1}s",
        total,
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn schema_cmd(a: &SchemaArgs) -> Result<ExitCode> {
    let Some(dir) = &a.out else {
        let text = match a.kind {
            CliSchemaKind::Manifest => {
                policy::schema::to_json(policy::schema::SchemaKind::Manifest)
            }
            CliSchemaKind::Directive => {
                policy::schema::to_json(policy::schema::SchemaKind::Directive)
            }
            CliSchemaKind::Assessment => {
                policy::schema::to_json(policy::schema::SchemaKind::Assessment)
            }
            CliSchemaKind::Report => report::context::schema_text(),
        };
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("writing the schema to stdout");
            }
            _ => return Ok(ExitCode::SUCCESS),
        }
    };
    for (name, text) in policy::schema::all() {
        let path = dir.join(name);
        output::write_bytes(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
