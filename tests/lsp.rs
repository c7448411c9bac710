//! `rulebook lsp` driven over stdio with JSON-RPC (`Content-Length` framing), as an editor
//! drives it: diagnostics as you type, fixed on change; hover on a parameter; definition from
//! an expression into another file; completion inside `when = "…"`.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A directive with no problems (on disk); the editor opens it with two mistakes in it.
const GOOD: &str = r#"[directive]
key = "lsp-test"
title = "编辑器测试"
effective_from = 2020-07-01

[directive.clauses.hours]
text = "每位党员服务时长"

[[rule]]
id = "lsp.hours"
version = 1
title = "编辑器测试规则"
subject = "member"
effective_from = 2020-07-01
clause = "hours"
severity = "minor"
period = "cycle"

[[rule.case]]
when = "verified_hours >= service_hours_required && epidemic_end != \"\""
status = "pass"
message = "服务 {verified_hours} 小时"

[[rule.case]]
status = "fail"
message = "不足"

[[rule]]
id = "lsp.any-hours"
version = 1
title = "编辑器测试规则二"
subject = "member"
effective_from = 2020-07-01
clause = "hours"
severity = "minor"

[[rule.case]]
when = "verified_hours > 0.0"
status = "pass"
message = "有服务"

[[rule.case]]
status = "warn"
message = "无服务"
"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start(workspace: &Path) -> Client {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("rulebook"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rulebook lsp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("Content-Length: ") {
                        len = n.parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            rx,
            next_id: 1,
        };
        let root = url(workspace);
        let init = c.request(
            "initialize",
            json!({ "processId": null, "rootUri": root, "capabilities": {} }),
        );
        assert!(init["capabilities"]["hoverProvider"].as_bool().unwrap());
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let msg = self.wait(|m| m["id"] == id && m.get("method").is_none());
        assert!(msg.get("error").is_none(), "{msg}");
        msg["result"].clone()
    }

    /// The next message that `pred` accepts (others are dropped).
    fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.rx.recv_timeout(left).expect("the server answers");
            if pred(&m) {
                return m;
            }
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let m = self.wait(|m| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        });
        m["params"]["diagnostics"].as_array().unwrap().clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// The LSP position (line, UTF-16 column) of the first `needle` in `text`.
fn pos(text: &str, needle: &str) -> Value {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in text"));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count();
    let col: usize = text[line_start..at].chars().map(char::len_utf16).sum();
    json!({ "line": line, "character": col })
}

fn range_of(text: &str, needle: &str) -> Value {
    let start = pos(text, needle);
    let end_col = start["character"].as_u64().unwrap() as usize
        + needle.chars().map(char::len_utf16).sum::<usize>();
    json!({ "start": start, "end": { "line": start["line"], "character": end_col } })
}

#[test]
fn an_editor_session() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = common::policies_copy(tmp.path());
    let file = policies.join("directives/lsp-test.toml");
    std::fs::write(&file, GOOD).unwrap();
    let mut c = Client::start(tmp.path());
    let uri = url(&file);

    // On start, the set on disk is checked: no problems.
    assert_eq!(c.diagnostics(&uri), Vec::<Value>::new());

    // Opened with a misspelt field in one rule and an unknown name in another rule's
    // expression (unsaved): both are reported at once, each where it is written.
    let bad = GOOD
        .replacen("status = \"pass\"", "staus = \"pass\"", 1)
        .replacen("verified_hours > 0.0", "verifed_hours > 0.0", 1);
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "toml", "version": 1, "text": bad } }),
    );
    let d = c.diagnostics(&uri);
    let field = d
        .iter()
        .find(|d| d["code"] == "RB0002")
        .unwrap_or_else(|| panic!("RB0002 in {d:?}"));
    assert_eq!(field["range"], range_of(&bad, "staus"), "{field}");
    assert!(
        field["message"].as_str().unwrap().contains("status"),
        "{field}"
    );
    let name = d
        .iter()
        .find(|d| d["code"] == "RB0402")
        .unwrap_or_else(|| panic!("RB0402 in {d:?}"));
    assert_eq!(name["range"], range_of(&bad, "verifed_hours"), "{name}");
    assert!(
        name["message"].as_str().unwrap().contains("verified_hours"),
        "{name}"
    );
    assert_eq!(d.len(), 2, "nothing else: {d:#?}");

    // Half fixed: only the unknown name is left.
    let half = bad.replacen("staus", "status", 1);
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": half }] }),
    );
    let d = c.diagnostics(&uri);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0]["code"], "RB0402", "{d:#?}");

    // Fixed: no diagnostics. The time from the change to the diagnostics is printed.
    let sent = Instant::now();
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": GOOD }] }),
    );
    assert_eq!(c.diagnostics(&uri), Vec::<Value>::new());
    eprintln!("didChange → publishDiagnostics: {:?}", sent.elapsed());

    // Hover on a parameter used in the expression: its dated values and basis.
    let h = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": pos(GOOD, "epidemic_end") }),
    );
    let text = h["contents"]["value"].as_str().unwrap();
    assert!(text.contains("from 2020-01-01: `2020-05-01`"), "{text}");
    assert!(text.contains("assumption"), "{text}");

    // Definition from the expression to the parameter's line in service-hours-20.toml.
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": pos(GOOD, "service_hours_required") }),
    );
    let other = policies.join("directives/service-hours-20.toml");
    assert_eq!(def["uri"], url(&other), "{def}");
    let other_text = std::fs::read_to_string(&other).unwrap();
    let name = range_of(&other_text, "service_hours_required]");
    assert_eq!(def["range"]["start"], name["start"], "{def}");
    assert_eq!(
        def["range"]["end"]["character"],
        name["end"]["character"].as_u64().unwrap() - 1
    );

    // Completion inside `when = "…"` offers the rule's aggregates (of its subject).
    let at = pos(GOOD, "verified_hours >=");
    let items = c.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": at }),
    );
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    for want in [
        "verified_hours",
        "unverified_hours",
        "service_hours_required",
        "employment",
        "hours_text",
        "round_to",
    ] {
        assert!(labels.contains(&want), "{want} not in {labels:?}");
    }
    // Not the aggregates of organizations.
    assert!(!labels.contains(&"work_team_members"), "{labels:?}");

    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
}

#[test]
fn lenses_references_and_hovers() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = common::policies_copy(tmp.path());
    let data = common::root().join("samples/hubei-2020");
    std::fs::write(
        tmp.path().join("rulebook.toml"),
        format!("data = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let mut c = Client::start(tmp.path());
    let file = policies.join("directives/service-hours-20.toml");
    let uri = url(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    let doc = |p: Value| json!({ "textDocument": { "uri": uri }, "position": p });

    // A lens over the rule: its counts on the sample dataset.
    let lenses = c.request(
        "textDocument/codeLens",
        json!({ "textDocument": { "uri": uri } }),
    );
    let lens = &lenses.as_array().unwrap()[0];
    assert_eq!(lens["range"]["start"], pos(&text, "[[rule]]"), "{lens}");
    let title = lens["command"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("pass ") && title.contains(" · fail "),
        "{title}"
    );

    // References of an aggregate: its uses in expressions, evidence and assessment.toml.
    let mut p = doc(pos(&text, "verified_hours]"));
    p["context"] = json!({ "includeDeclaration": true });
    let refs = c.request("textDocument/references", p);
    let refs = refs.as_array().unwrap();
    let assessment = url(&policies.join("assessment.toml"));
    assert!(refs.iter().any(|r| r["uri"] == assessment), "{refs:?}");
    assert!(
        refs.iter().filter(|r| r["uri"] == uri).count() >= 5,
        "{refs:?}"
    );

    let hover = |c: &mut Client, p: Value| -> String {
        let h = c.request("textDocument/hover", p);
        h["contents"]["value"].as_str().unwrap_or("").to_string()
    };
    // A rule function, a clause reference, a column in a filter.
    let h = hover(&mut c, doc(pos(&text, "to_float(service")));
    assert!(h.contains("to_float(n) -> float"), "{h}");
    let h = hover(&mut c, doc(pos(&text, "yearly-hours\"\nseverity")));
    assert!(h.contains("要求每位党员在社区服务 20小时"), "{h}");
    let h = hover(&mut c, doc(pos(&text, "verified\", is = true")));
    assert!(h.contains("是否核实") && h.contains("bool"), "{h}");

    // A diagnostic's code explained where it is.
    let bad = text.replacen("status = \"pass\"", "staus = \"pass\"", 1);
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "toml", "version": 1, "text": bad } }),
    );
    let h = hover(&mut c, doc(pos(&bad, "staus")));
    assert!(h.contains("RB0002: unknown field"), "{h}");

    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
}
