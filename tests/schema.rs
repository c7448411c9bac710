//! The JSON Schemas for editors: `rulebook schema` derives them from the Rust types that parse
//! the policy files; `policies/schema/` ships them and `.taplo.toml` maps them to the files.
//! These tests keep the shipped copies equal to what the code prints, check that every shipped
//! policy file validates, and that broken files fail validation as they fail `rulebook check`.

mod common;

use common::{policies, root, rulebook};
use serde_json::Value;
use std::path::{Path, PathBuf};

const REGENERATE: &str =
    "regenerate with `cargo run -- schema --out policies/schema` and commit the result";

/// (`--kind`, shipped file name, the policy files it is for).
const KINDS: [(&str, &str); 3] = [
    ("manifest", "policy.schema.json"),
    ("directive", "directive.schema.json"),
    ("assessment", "assessment.schema.json"),
];

fn shipped_text(file: &str) -> String {
    let path = policies().join("schema").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()))
}

fn shipped(file: &str) -> Value {
    serde_json::from_str(&shipped_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The first line where two texts differ, for a short failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            return format!(
                "line {}: shipped {:?}, printed {:?}",
                i + 1,
                x.copied().unwrap_or("<end>"),
                y.copied().unwrap_or("<end>")
            );
        }
    }
    "no line differs (line endings?)".into()
}

fn assert_same(file: &str, shipped: &str, printed: &str) {
    assert!(
        shipped == printed,
        "policies/schema/{file} is out of date with the Rust types in src/policy/model.rs ({}); {REGENERATE}",
        first_difference(shipped, printed)
    );
}

fn print_schema(args: &[&str]) -> String {
    let out = rulebook().arg("schema").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rulebook schema {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// (a) The shipped schemas are what the code prints now.

#[test]
fn shipped_schemas_equal_what_rulebook_schema_prints() {
    for (kind, file) in KINDS {
        assert_same(file, &shipped_text(file), &print_schema(&["--kind", kind]));
    }
    // Without --kind: the directive schema.
    assert_same(
        "directive.schema.json",
        &shipped_text("directive.schema.json"),
        &print_schema(&[]),
    );
}

#[test]
fn schema_out_writes_all_three_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("schema");
    let out = rulebook()
        .args(["schema", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "assessment.schema.json",
            "directive.schema.json",
            "policy.schema.json"
        ],
        "exactly the three schemas, no temporary files left"
    );
    for (_, file) in KINDS {
        let written = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_same(file, &shipped_text(file), &written);
    }
}

#[test]
fn schemas_are_draft_7_for_taplo() {
    for (_, file) in KINDS {
        let schema = shipped(file);
        assert_eq!(
            schema["$schema"], "http://json-schema.org/draft-07/schema#",
            "{file}: Taplo validates with draft 7"
        );
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{file} is not a valid JSON Schema: {e}");
        }
        assert_eq!(
            schema["additionalProperties"], false,
            "{file}: unknown fields"
        );
        let text = shipped_text(file);
        assert!(
            !text.contains("\"$defs\""),
            "{file}: draft 7 uses `definitions`"
        );
        assert!(!text.contains("\"null\""), "{file}: TOML has no null");
    }
    // Every table of the policy files rejects unknown fields.
    let directive = shipped("directive.schema.json");
    for (name, def) in directive["definitions"].as_object().unwrap() {
        if def["type"] == "object" {
            assert_eq!(def["additionalProperties"], false, "{name}");
        }
    }
}

// (b) Every shipped policy file validates against its schema.

/// A TOML document as the JSON a TOML-aware validator sees: dates become strings.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn parse_toml(text: &str, what: &str) -> Value {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    toml_to_json(toml::Value::Table(table))
}

/// Validation errors as `path: message`, with formats (`date`) checked.
fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The shipped policy files with the schema each is for.
fn policy_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut files = vec![(dir.join("policy.toml"), "policy.schema.json")];
    if dir.join("assessment.toml").is_file() {
        files.push((dir.join("assessment.toml"), "assessment.schema.json"));
    }
    let mut directives: Vec<PathBuf> = std::fs::read_dir(dir.join("directives"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    directives.sort();
    files.extend(directives.into_iter().map(|p| (p, "directive.schema.json")));
    files
}

#[test]
fn every_shipped_policy_file_validates() {
    let files = policy_files(&policies());
    let directives = files
        .iter()
        .filter(|(_, s)| *s == "directive.schema.json")
        .count();
    assert!(directives >= 5, "found only {directives} directive files");
    assert!(files.iter().any(|(_, s)| *s == "assessment.schema.json"));
    let mut problems = Vec::new();
    for (path, schema_file) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let instance = parse_toml(&text, &path.display().to_string());
        for e in errors(&shipped(schema_file), &instance) {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "shipped policy files fail their schema:\n{}",
        problems.join("\n")
    );
}

#[test]
fn taplo_config_maps_each_policy_file_to_its_schema() {
    let text = std::fs::read_to_string(root().join(".taplo.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let rules = config["rule"].as_array().expect("[[rule]] entries");
    let mapped: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            let include = r["include"].as_array().unwrap();
            assert_eq!(include.len(), 1);
            (
                include[0].as_str().unwrap().to_string(),
                r["schema"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("policies/policy.toml", "policies/schema/policy.schema.json"),
        (
            "policies/directives/*.toml",
            "policies/schema/directive.schema.json",
        ),
        (
            "policies/assessment.toml",
            "policies/schema/assessment.schema.json",
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(mapped, expected);
    for (_, schema) in &mapped {
        assert!(root().join(schema).is_file(), "{schema} is missing");
    }
}

// (c) Broken files fail validation, as they fail `rulebook check`.

const HOURS: &str = "directives/service-hours-20.toml";

/// The shipped `service-hours-20.toml` with `from` replaced by `to` (which must occur).
fn broken_hours(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(policies().join(HOURS)).unwrap();
    assert!(text.contains(from), "{HOURS} no longer contains {from:?}");
    text.replacen(from, to, 1)
}

/// Errors of the broken directive against the schema, and `rulebook check`'s output for a
/// copy of the policies holding it.
fn schema_and_check(text: &str) -> (Vec<String>, Option<String>) {
    let errs = errors(
        &shipped("directive.schema.json"),
        &parse_toml(text, "broken copy"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::policies_copy(tmp.path());
    std::fs::write(dir.join(HOURS), text).unwrap();
    let check = match rulebook::policy::load(&dir) {
        Ok(_) => None,
        Err(fail) => Some(fail.render()),
    };
    (errs, check)
}

#[test]
fn misspelt_field_in_a_rule_case_fails() {
    // `staus` beside the real `status`: only the unknown field is wrong.
    let text = broken_hours("[[rule.case]]\n", "[[rule.case]]\nstaus = \"fail\"\n");
    let (errs, check) = schema_and_check(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("/rule/0/case/0:") && errs[0].contains("staus"),
        "{errs:#?}"
    );
    let check = check.expect("rulebook check rejects the misspelt field too");
    assert!(check.contains("unknown field `staus`"), "{check}");
}

#[test]
fn other_mistakes_fail_both_schema_and_check() {
    // (what is wrong, replace this, with this, a word the schema error has)
    let cases = [
        (
            "status spelt wrongly (and so missing)",
            "status = \"pass\"",
            "staus = \"pass\"",
            "status",
        ),
        (
            "severity not one of the words",
            "severity = \"major\"",
            "severity = \"huge\"",
            "huge",
        ),
        (
            "a date that is not a date",
            "effective_from = 2020-07-01",
            "effective_from = \"2020-07-32\"",
            "2020-07-32",
        ),
        (
            "a number where text goes",
            "title = \"",
            "title = 20 # \"",
            "string",
        ),
        (
            "a case without its message",
            "\nmessage = ",
            "\nmesage = ",
            "message",
        ),
    ];
    for (what, from, to, word) in cases {
        let (errs, check) = schema_and_check(&broken_hours(from, to));
        assert!(
            errs.iter().any(|e| e.contains(word)),
            "{what}: the schema should reject it, mentioning {word:?}; errors: {errs:#?}"
        );
        assert!(
            check.is_some(),
            "{what}: rulebook check should reject it too"
        );
    }
}
