//! cfgate as a plain language server, driven over stdio as Helix or any LSP client would:
//! document sync, inline completion, completion items and code actions, against the fake
//! gateway. Positions in these tests are computed here, independently of cfgate's code,
//! so an off-by-one on either side shows.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const URI: &str = "file:///work/project/src/main.rs";

/// LSP position of char `offset` in `text`, counting in `encoding` units; `\n`, `\r\n`
/// and `\r` end lines.
fn position(text: &str, offset: usize, encoding: &str) -> Value {
    let (mut line, mut character) = (0u32, 0u32);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < offset {
        match chars[i] {
            '\r' if chars.get(i + 1) == Some(&'\n') && i + 1 < offset => {
                i += 1;
                line += 1;
                character = 0;
            }
            '\n' | '\r' => {
                line += 1;
                character = 0;
            }
            c => {
                character += match encoding {
                    "utf-8" => c.len_utf8() as u32,
                    "utf-32" => 1,
                    _ => c.len_utf16() as u32,
                }
            }
        }
        i += 1;
    }
    json!({"line": line, "character": character})
}

fn char_offset_of(text: &str, needle: &str) -> usize {
    let byte = text.find(needle).expect("needle in text");
    text[..byte].chars().count()
}

fn capabilities(encoding: &str) -> Value {
    json!({
        "general": {"positionEncodings": [encoding]},
        "workspace": {"workspaceEdit": {"documentChanges": true}},
        "textDocument": {"inlineCompletion": {}},
    })
}

async fn start(fake: &FakeGateway, encoding: &str) -> Daemon {
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let init = d
        .initialize_with(
            capabilities(encoding),
            json!({"base_url": fake.compat_base("acc", "gw")}),
        )
        .await;
    assert_eq!(init["capabilities"]["positionEncoding"], encoding);
    d
}

async fn open(d: &mut Daemon, text: &str) {
    d.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "rust", "version": 1, "text": text}}),
    )
    .await;
}

fn at(pos: &Value) -> Value {
    json!({"textDocument": {"uri": URI}, "position": pos, "context": {"triggerKind": 1}})
}

/// The prefix and suffix the fake was sent, read back out of the completion prompt.
fn sent_context(request: &RecordedRequest) -> (String, String) {
    let user = request.body["messages"][1]["content"]
        .as_str()
        .expect("user message")
        .to_string();
    let start = user.find("```\n").expect("opening fence") + 4;
    let cursor = start + user[start..].find("<CURSOR>").expect("cursor marker");
    let end = user
        .rfind("\n```\nThe text to insert at <CURSOR>:")
        .expect("closing fence");
    (
        user[start..cursor].to_string(),
        user[cursor + "<CURSOR>".len()..end].to_string(),
    )
}

fn answer(content: &str) -> Script {
    Script {
        content: Some(content.into()),
        ..Script::default()
    }
}

#[tokio::test]
async fn initialize_advertises_what_works_and_negotiates_the_encoding() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    // Offered in order of preference: the first one cfgate supports wins.
    let init = d
        .initialize_with(
            json!({"general": {"positionEncodings": ["utf-7", "utf-32", "utf-8"]}}),
            json!({"base_url": fake.compat_base("acc", "gw")}),
        )
        .await;
    let caps = &init["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-32");
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync");
    assert_eq!(caps["textDocumentSync"]["openClose"], true);
    assert_eq!(caps["inlineCompletionProvider"], true);
    assert!(caps["completionProvider"].is_object());
    assert!(
        caps["completionProvider"]
            .get("triggerCharacters")
            .is_none(),
        "completion must only run when invoked: {caps}"
    );
    assert_eq!(
        caps["executeCommandProvider"]["commands"],
        json!(["cfgate.explain", "cfgate.fix", "cfgate.addDocs"])
    );
    assert!(caps["codeActionProvider"].is_object());
    // Nothing claimed that is not implemented.
    for absent in [
        "hoverProvider",
        "definitionProvider",
        "documentFormattingProvider",
    ] {
        assert!(caps.get(absent).is_none(), "{absent} advertised: {caps}");
    }

    let mut plain = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let init = plain.initialize(json!({})).await;
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
}

#[tokio::test]
async fn inline_completion_sends_the_text_around_the_cursor_and_answers_its_range() {
    let text = "fn main() {\n    let s = \"é😀\"; let x = ;\n    println!(\"{x}\");\n}\n";
    let cursor = char_offset_of(text, " ;\n") + 1;
    for encoding in ["utf-16", "utf-8", "utf-32"] {
        let fake = FakeGateway::start().await;
        let mut d = start(&fake, encoding).await;
        open(&mut d, text).await;
        fake.push_script(answer("42"));
        let pos = position(text, cursor, encoding);
        let list = d
            .request("textDocument/inlineCompletion", at(&pos))
            .await
            .expect("inline completion answered");
        let items = list["items"].as_array().expect("an InlineCompletionList");
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["insertText"], "42");
        assert_eq!(items[0]["range"]["start"], pos, "{encoding}");
        assert_eq!(items[0]["range"]["end"], pos, "{encoding}");

        let requests = chat_requests(&fake);
        assert_eq!(requests.len(), 1);
        let (prefix, suffix) = sent_context(&requests[0]);
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(
            prefix,
            chars[..cursor].iter().collect::<String>(),
            "{encoding}"
        );
        assert_eq!(
            suffix,
            chars[cursor..].iter().collect::<String>(),
            "{encoding}"
        );
        let user = requests[0].body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("File: /work/project/src/main.rs"), "{user}");
        assert!(user.contains("Language: rust"), "{user}");
    }
}

#[tokio::test]
async fn the_context_budget_bounds_what_is_sent() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({
        "base_url": fake.compat_base("acc", "gw"),
        "completion_context_chars": 200,
    }))
    .await;
    let before: String = (0..100).map(|i| format!("let a{i} = {i};\n")).collect();
    let after: String = (0..100).map(|i| format!("let b{i} = {i};\n")).collect();
    let text = format!("{before}let x = {after}");
    open(&mut d, &text).await;
    let cursor = char_offset_of(&text, "let x = ") + 8;
    fake.push_script(answer("1;"));
    d.request(
        "textDocument/inlineCompletion",
        at(&position(&text, cursor, "utf-16")),
    )
    .await
    .expect("answered");
    let (prefix, suffix) = sent_context(&chat_requests(&fake)[0]);
    assert!(prefix.len() + suffix.len() <= 200, "{prefix:?} {suffix:?}");
    assert!(prefix.ends_with("let a99 = 99;\nlet x = "), "{prefix:?}");
    assert!(prefix.starts_with("let a"), "cut mid-line: {prefix:?}");
    assert!(suffix.starts_with("let b0 = 0;\n"), "{suffix:?}");
}

#[tokio::test]
async fn edits_through_did_change_reach_the_model() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    let mut text = String::from("fn f() {\n    \n}\n");
    open(&mut d, &text).await;
    // Type "let é😀 = 1;" one char at a time on line 1, as an editor sends it.
    let typed = "let é😀 = 1;";
    let first = char_offset_of(&text, "    \n") + 4;
    for (version, c) in typed.chars().enumerate() {
        let cursor = first + version;
        let pos = position(&text, cursor, "utf-16");
        d.notify(
            "textDocument/didChange",
            json!({
                "textDocument": {"uri": URI, "version": version + 2},
                "contentChanges": [{"range": {"start": pos, "end": pos}, "text": c.to_string()}],
            }),
        )
        .await;
        let byte = text.char_indices().nth(cursor).unwrap().0;
        text.insert(byte, c);
    }
    // Then replace "1" with "22" by range, and send a multi-change event.
    let one = char_offset_of(&text, "1;");
    d.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 100},
            "contentChanges": [
                {"range": {"start": position(&text, one, "utf-16"), "end": position(&text, one + 1, "utf-16")}, "text": "22"},
                {"range": {"start": {"line": 0, "character": 3}, "end": {"line": 0, "character": 4}}, "text": "g"},
            ],
        }),
    )
    .await;
    text = text.replacen("1;", "22;", 1).replacen("fn f", "fn g", 1);
    fake.push_script(answer("x"));
    let end = text.chars().count();
    d.request(
        "textDocument/inlineCompletion",
        at(&position(&text, end, "utf-16")),
    )
    .await
    .expect("answered");
    let (prefix, suffix) = sent_context(&chat_requests(&fake)[0]);
    assert_eq!(prefix, text);
    assert_eq!(suffix, "");
}

#[tokio::test]
async fn a_newer_request_for_the_document_cancels_the_older() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    let text = "let x = \n";
    open(&mut d, text).await;
    fake.push_script(Script {
        fault: Some(Fault::StallBeforeHeaders),
        ..Script::default()
    });
    let pos = position(text, 8, "utf-16");
    let older = d
        .start_request("textDocument/inlineCompletion", at(&pos))
        .await;
    fake.wait_for_requests(1, WAIT).await;
    fake.push_script(answer("5;"));
    let newer = d
        .start_request("textDocument/inlineCompletion", at(&pos))
        .await;
    let err = d.response(older).await.expect_err("older is cancelled");
    assert_eq!(err["code"], -32800, "{err}");
    let list = d.response(newer).await.expect("newer is answered");
    assert_eq!(list["items"][0]["insertText"], "5;");
    assert_eq!(chat_requests(&fake).len(), 2);
}

#[tokio::test]
async fn typing_through_a_suggestion_is_answered_without_the_model() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    let text = "let s = \nnext();\n";
    open(&mut d, text).await;
    fake.push_script(answer("\"é😀\".len();"));
    let pos = position(text, 8, "utf-16");
    let first = d
        .request("textDocument/inlineCompletion", at(&pos))
        .await
        .unwrap();
    assert_eq!(first["items"][0]["insertText"], "\"é😀\".len();");

    // The user types the suggestion's first three chars: `"é😀`.
    d.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 2},
            "contentChanges": [{"range": {"start": pos, "end": pos}, "text": "\"é😀"}],
        }),
    )
    .await;
    let now = "let s = \"é😀\nnext();\n";
    let moved = position(now, 11, "utf-16");
    assert_eq!(moved, json!({"line": 0, "character": 12}));
    let second = d
        .request("textDocument/inlineCompletion", at(&moved))
        .await
        .unwrap();
    assert_eq!(second["items"][0]["insertText"], "\".len();");
    assert_eq!(second["items"][0]["range"]["start"], moved);
    assert_eq!(chat_requests(&fake).len(), 1, "the cache answered");

    // Typing something else asks the model again.
    d.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 3},
            "contentChanges": [{"range": {"start": moved, "end": moved}, "text": "x"}],
        }),
    )
    .await;
    fake.push_script(answer(".y"));
    let third = d
        .request(
            "textDocument/inlineCompletion",
            at(&json!({"line": 0, "character": 13})),
        )
        .await
        .unwrap();
    assert_eq!(third["items"][0]["insertText"], ".y");
    assert_eq!(chat_requests(&fake).len(), 2);
}

#[tokio::test]
async fn completion_offers_one_item_only_when_invoked() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-8").await;
    let text = "    let total = compu\n";
    open(&mut d, text).await;
    let cursor = char_offset_of(text, "compu") + 5;
    let pos = position(text, cursor, "utf-8");

    let auto = json!({"textDocument": {"uri": URI}, "position": pos, "context": {"triggerKind": 2, "triggerCharacter": "."}});
    let none = d.request("textDocument/completion", auto).await.unwrap();
    assert_eq!(none, Value::Null);
    assert!(
        chat_requests(&fake).is_empty(),
        "no model call unless invoked"
    );

    fake.push_script(answer("te_total(&items);"));
    let list = d
        .request("textDocument/completion", at(&pos))
        .await
        .unwrap();
    let items = list["items"].as_array().expect("a CompletionList");
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["preselect"], true);
    assert_eq!(item["sortText"], "0");
    // The word before the cursor is replaced by itself and the suggestion.
    assert_eq!(item["textEdit"]["newText"], "compute_total(&items);");
    let word_start = position(text, char_offset_of(text, "compu"), "utf-8");
    assert_eq!(item["textEdit"]["range"]["start"], word_start);
    assert_eq!(item["textEdit"]["range"]["end"], pos);
    assert_eq!(item["label"], "compute_total(&items);");
}

/// Applies an LSP edit (one line/character range) to `text` as a client would.
fn apply_edit(text: &str, edit: &Value, encoding: &str) -> String {
    let count = text.chars().count();
    let offset = |p: &Value| {
        (0..=count)
            .find(|&o| &position(text, o, encoding) == p)
            .unwrap_or_else(|| panic!("position {p} is not in the document"))
    };
    let (a, b) = (
        offset(&edit["range"]["start"]),
        offset(&edit["range"]["end"]),
    );
    let chars: Vec<char> = text.chars().collect();
    let mut out: String = chars[..a].iter().collect();
    out.push_str(edit["newText"].as_str().unwrap());
    out.extend(&chars[b..]);
    out
}

#[tokio::test]
async fn fix_and_docs_actions_come_back_as_edits_that_apply_cleanly() {
    let text = "fn main() {\n    // é😀\n    let x = 1 +;\n    println!(\"{x}\");\n}\n";
    for (command, answer_text, replaced) in [
        (
            "cfgate.fix",
            "```rust\n    let x = 1 + 2;\n```",
            "    let x = 1 + 2;\n",
        ),
        (
            "cfgate.addDocs",
            "    /// The sum.\n    let x = 1 +;\n",
            "    /// The sum.\n    let x = 1 +;\n",
        ),
    ] {
        let fake = FakeGateway::start().await;
        let mut d = start(&fake, "utf-16").await;
        open(&mut d, text).await;
        // Select line 2 whole, from its start to the start of line 3.
        let sel_start = char_offset_of(text, "    let x");
        let sel_end = char_offset_of(text, "    println");
        let range = json!({"start": position(text, sel_start, "utf-16"), "end": position(text, sel_end, "utf-16")});
        let actions = d
            .request(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": URI}, "range": range, "context": {"diagnostics": []}}),
            )
            .await
            .unwrap();
        let titles: Vec<&str> = actions
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            ["cfgate: explain", "cfgate: fix", "cfgate: add docs"]
        );
        let action = actions
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["command"]["command"] == command)
            .unwrap()
            .clone();

        fake.push_script(answer(answer_text));
        let id = d
            .start_request(
                "workspace/executeCommand",
                json!({"command": command, "arguments": action["command"]["arguments"]}),
            )
            .await;
        let apply = d
            .wait_for("workspace/applyEdit", |m| {
                m["method"] == "workspace/applyEdit"
            })
            .await;
        let change = &apply["params"]["edit"]["documentChanges"][0];
        assert_eq!(change["textDocument"]["uri"], URI);
        assert_eq!(change["textDocument"]["version"], 1);
        let edits = change["edits"].as_array().unwrap();
        assert_eq!(edits.len(), 1);
        let edited = apply_edit(text, &edits[0], "utf-16");
        let expected = format!(
            "{}{replaced}{}",
            &text[..text.find("    let x").unwrap()],
            &text[text.find("    println").unwrap()..]
        );
        assert_eq!(edited, expected, "{command}");
        d.send(&json!({"jsonrpc": "2.0", "id": apply["id"], "result": {"applied": true}}))
            .await;
        let result = d.response(id).await.expect("command answered");
        assert_eq!(result, json!({"applied": true}));
        // The selected code, and only it, went to the model.
        let sent = chat_requests(&fake)[0].body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(sent.contains("```\n    let x = 1 +;\n\n```"), "{sent}");
    }
}

#[tokio::test]
async fn explain_shows_a_message_and_edits_nothing() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    let text = "x = y / 0\n";
    open(&mut d, text).await;
    fake.push_script(answer("Divides by zero."));
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 9}});
    let result = d
        .request(
            "workspace/executeCommand",
            json!({"command": "cfgate.explain", "arguments": [{"uri": URI, "range": range}]}),
        )
        .await
        .unwrap();
    assert_eq!(result, json!({"explanation": "Divides by zero."}));
    let shown = d
        .wait_for("showMessage", |m| m["method"] == "window/showMessage")
        .await;
    assert_eq!(shown["params"]["message"], "cfgate: Divides by zero.");
    assert_eq!(shown["params"]["type"], 3);
}

#[tokio::test]
async fn bad_language_requests_get_clear_errors_and_the_daemon_goes_on() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    // Edits to a document never opened are ignored.
    d.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": "file:///nope", "version": 2}, "contentChanges": [{"text": "x"}]}),
    )
    .await;
    let err = d
        .request(
            "workspace/executeCommand",
            json!({"command": "cfgate.fix", "arguments": [{"uri": "file:///nope", "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}}}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(
        err["message"].as_str().unwrap().contains("not open"),
        "{err}"
    );
    let err = d
        .request("workspace/executeCommand", json!({"command": "cfgate.fix"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    let err = d
        .request("workspace/executeCommand", json!({"command": "rm -rf"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    open(&mut d, "a\n").await;
    let empty = json!({"start": {"line": 0, "character": 1}, "end": {"line": 0, "character": 1}});
    let none = d
        .request(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": URI}, "range": empty, "context": {"diagnostics": []}}),
        )
        .await
        .unwrap();
    assert_eq!(none, Value::Null, "no AI actions without a selection");
    // An upstream failure is the request's error, not the daemon's end.
    fake.push_script(Script {
        status: Some(500),
        body: Some(r#"{"error":{"message":"boom"}}"#.into()),
        repeat: 5,
        ..Script::default()
    });
    let err = d
        .request(
            "textDocument/inlineCompletion",
            at(&json!({"line": 0, "character": 1})),
        )
        .await
        .unwrap_err();
    assert!(err["code"].as_i64().unwrap() > 1000, "{err}");
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("a"),
        Just("é"),
        Just("😀"),
        Just("\n"),
        Just("\r\n"),
        Just(" "),
        Just("x")
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random edit sequences sent through `didChange` leave cfgate's text equal to the
    /// client's, in each position encoding: what reaches the model is the client's text.
    #[test]
    fn random_edits_keep_the_daemon_in_step(
        encoding in prop_oneof![Just("utf-8"), Just("utf-16"), Just("utf-32")],
        start in proptest::collection::vec(piece(), 0..20),
        edits in proptest::collection::vec((0.0..1.0f64, 0.0..0.3f64, proptest::collection::vec(piece(), 0..4)), 1..25),
        cursor_at in 0.0..1.0f64,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let fake = FakeGateway::start().await;
            let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
            d.initialize_with(capabilities(encoding), json!({"base_url": fake.compat_base("a", "g"), "completion_context_chars": 100_000})).await;
            let mut text: String = start.concat();
            open(&mut d, &text).await;
            // Offsets never fall inside a "\r\n": a client's never do.
            let offsets = |t: &str| -> Vec<usize> {
                let chars: Vec<char> = t.chars().collect();
                (0..=chars.len()).filter(|&i| !(i > 0 && chars[i - 1] == '\r' && chars.get(i) == Some(&'\n'))).collect()
            };
            for (version, (at_frac, len_frac, insert)) in edits.iter().enumerate() {
                let valid = offsets(&text);
                let a = valid[((valid.len() - 1) as f64 * at_frac) as usize];
                let after: Vec<usize> = valid.iter().copied().filter(|&o| o >= a).collect();
                let b = after[((after.len() - 1) as f64 * len_frac) as usize];
                let insert = insert.concat();
                d.notify("textDocument/didChange", json!({
                    "textDocument": {"uri": URI, "version": version + 2},
                    "contentChanges": [{"range": {"start": position(&text, a, encoding), "end": position(&text, b, encoding)}, "text": insert}],
                })).await;
                let chars: Vec<char> = text.chars().collect();
                text = chars[..a].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[b..].iter()).collect();
            }
            let valid = offsets(&text);
            let cursor = valid[((valid.len() - 1) as f64 * cursor_at) as usize];
            fake.push_script(answer("z"));
            d.request("textDocument/inlineCompletion", at(&position(&text, cursor, encoding))).await.expect("answered");
            let (prefix, suffix) = sent_context(&chat_requests(&fake)[0]);
            let chars: Vec<char> = text.chars().collect();
            assert_eq!(prefix, chars[..cursor].iter().collect::<String>());
            assert_eq!(suffix, chars[cursor..].iter().collect::<String>());
        });
    }
}

#[tokio::test]
async fn edits_and_other_documents_never_wait_for_a_completion_in_flight() {
    let fake = FakeGateway::start().await;
    let mut d = start(&fake, "utf-16").await;
    let other = "file:///work/project/src/other.rs";
    open(&mut d, "let a = \n").await;
    d.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": other, "languageId": "rust", "version": 1, "text": "let b = \n"}}),
    )
    .await;
    // A completion for URI that the gateway never answers.
    fake.push_script(Script {
        fault: Some(Fault::StallBeforeHeaders),
        ..Script::default()
    });
    let stalled = d
        .start_request(
            "textDocument/inlineCompletion",
            at(&json!({"line": 0, "character": 8})),
        )
        .await;
    fake.wait_for_requests(1, WAIT).await;
    // Meanwhile the user types in that document, and asks in another one.
    d.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 2},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 8}, "end": {"line": 0, "character": 8}}, "text": "vec!["}],
        }),
    )
    .await;
    fake.push_script(answer("2;"));
    let list = d
        .request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": other}, "position": {"line": 0, "character": 8}, "context": {"triggerKind": 1}}),
        )
        .await
        .expect("the other document is answered while the first waits");
    assert_eq!(list["items"][0]["insertText"], "2;");
    // The edit made while the first request waited is in the text the next one sends.
    fake.push_script(answer("1]"));
    let list = d
        .request(
            "textDocument/inlineCompletion",
            at(&json!({"line": 0, "character": 13})),
        )
        .await
        .unwrap();
    assert_eq!(list["items"][0]["insertText"], "1]");
    let (prefix, _) = sent_context(&chat_requests(&fake)[2]);
    assert_eq!(prefix, "let a = vec![");
    let err = d.response(stalled).await.expect_err("superseded");
    assert_eq!(err["code"], -32800);
}

#[tokio::test]
async fn a_setting_sent_as_null_goes_back_to_unset() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({"base_url": fake.compat_base("acc", "gw"), "model": "openai/gpt-4o-mini"}))
        .await;
    let before = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(before.unwrap()["model"], "openai/gpt-4o-mini");
    // VS Code sends every setting of the section, with null for those the user removed.
    d.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"cfgate": {"model": null, "max_tokens": 64}}}),
    )
    .await;
    let after = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(
        after.unwrap()["model"],
        "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent[1].body["max_tokens"], 64);
}

#[tokio::test]
async fn completion_items_are_escaped_snippets_for_clients_that_take_snippets() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize_with(
        json!({"textDocument": {"completion": {"completionItem": {"snippetSupport": true}}}}),
        json!({"base_url": fake.compat_base("acc", "gw")}),
    )
    .await;
    let text = "echo \"pri\n";
    open(&mut d, text).await;
    fake.push_script(answer("ce: ${PRICE} \\ {x}\"\nnext"));
    let pos = position(text, 9, "utf-16");
    let list = d
        .request("textDocument/completion", at(&pos))
        .await
        .unwrap();
    let item = &list["items"][0];
    assert_eq!(item["insertTextFormat"], 2, "a snippet: {item}");
    // Inserted as a snippet, this is exactly the suggestion: nothing in it is a placeholder.
    assert_eq!(
        item["textEdit"]["newText"],
        "price: \\${PRICE\\} \\\\ {x\\}\"\nnext"
    );
    assert_eq!(item["label"], "price: ${PRICE} \\ {x}\"");
}

#[tokio::test]
async fn a_plugin_with_its_own_completion_can_turn_the_language_features_off() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let init = d
        .initialize(json!({"base_url": fake.compat_base("acc", "gw"), "language_features": false}))
        .await;
    let caps = init["capabilities"].as_object().unwrap();
    let keys: Vec<&String> = caps.keys().collect();
    assert_eq!(keys, ["experimental"], "only cfgate's own methods: {init}");
    // cfgate's own methods still work.
    let chat = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(chat.unwrap()["content"], "echo: hi");
}
