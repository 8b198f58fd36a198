//! cfgate as a plain language server: document sync, inline completion and completion
//! items, for editors that speak LSP and will never get a cfgate plugin (the AI code
//! actions are in `code_actions.rs`).
//!
//! Two rules shape this file. A handler takes a snapshot of its document and lets the lock
//! go before it awaits anything, so `didChange` never waits for a model. And sync
//! notifications change the document before their handler first awaits: the connection
//! (`connection.rs`) starts handlers in the order messages arrive, so edits apply in order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tower_lsp_server::jsonrpc::{self, ErrorCode};
use tower_lsp_server::ls_types::{
    ClientCapabilities, CodeActionKind, CodeActionOptions, CodeActionProviderCapability,
    CompletionItem, CompletionItemKind, CompletionList, CompletionOptions, CompletionParams,
    CompletionResponse, CompletionTextEdit, CompletionTriggerKind, DidChangeTextDocumentParams,
    DidCloseTextDocumentParams, DidOpenTextDocumentParams, Documentation, ExecuteCommandOptions,
    InlineCompletionItem, InlineCompletionList, InlineCompletionParams, InsertTextFormat,
    MarkupContent, MarkupKind, OneOf, Position, Range, ServerCapabilities,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions, TextEdit,
};
use tracing::{debug, warn};

use super::lsp::{Backend, to_rpc_error};
use crate::actions::Action;
use crate::documents::{Encoding, Snapshot};
use crate::error::Error;
use crate::protocol::CompleteParams;

/// What the client said it can do, as far as these features care.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientFeatures {
    pub encoding: Encoding,
    /// `workspace.workspaceEdit.documentChanges`: edits can name the version they are for.
    pub versioned_edits: bool,
    /// `textDocument.completion.completionItem.snippetSupport`.
    pub snippets: bool,
}

impl ClientFeatures {
    pub fn of(caps: &ClientCapabilities) -> ClientFeatures {
        ClientFeatures {
            encoding: Encoding::negotiate(
                caps.general
                    .as_ref()
                    .and_then(|g| g.position_encodings.as_deref()),
            ),
            versioned_edits: caps
                .workspace
                .as_ref()
                .and_then(|w| w.workspace_edit.as_ref())
                .and_then(|e| e.document_changes)
                .unwrap_or(false),
            snippets: caps
                .text_document
                .as_ref()
                .and_then(|t| t.completion.as_ref())
                .and_then(|c| c.completion_item.as_ref())
                .and_then(|i| i.snippet_support)
                .unwrap_or(false),
        }
    }
}

/// The capabilities these features add to `initialize`'s answer: only what works.
pub fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(encoding.kind()),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                ..TextDocumentSyncOptions::default()
            },
        )),
        inline_completion_provider: Some(OneOf::Left(true)),
        // No trigger characters: the suggestion comes only when the user asks for
        // completion, so it never slows down the editor's other completions.
        completion_provider: Some(CompletionOptions {
            resolve_provider: Some(false),
            ..CompletionOptions::default()
        }),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![
                CodeActionKind::QUICKFIX,
                CodeActionKind::REFACTOR_REWRITE,
            ]),
            ..CodeActionOptions::default()
        })),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: Action::ALL.iter().map(|a| a.command().into()).collect(),
            ..ExecuteCommandOptions::default()
        }),
        ..ServerCapabilities::default()
    }
}

/// The suggestion request in flight for each document: a newer one drops the older's
/// sender, which ends the older request (and its upstream call) at once.
#[derive(Default)]
pub struct InFlight {
    next: AtomicU64,
    by_uri: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
}

impl InFlight {
    fn start(&self, uri: &str) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(uri.to_string(), (id, tx));
        (id, rx)
    }

    fn end(&self, uri: &str, id: u64) {
        let mut by_uri = self.lock();
        if by_uri.get(uri).is_some_and(|(current, _)| *current == id) {
            by_uri.remove(uri);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, oneshot::Sender<()>)>> {
        crate::sync::lock(&self.by_uri)
    }
}

/// A suggestion for one cursor.
struct Suggested {
    doc: Snapshot,
    cursor: usize,
    text: String,
}

impl Backend {
    pub(super) fn open_document(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let uri = doc.uri.as_str().to_string();
        self.shown.forget(&uri);
        self.documents.open(
            uri,
            doc.version,
            doc.language_id,
            &doc.text,
            self.features().encoding,
        );
    }

    pub(super) fn change_document(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri.as_str();
        let changes = &params.content_changes;
        if !self
            .documents
            .change(uri, params.text_document.version, changes)
        {
            warn!("didChange for a document that is not open: {uri}");
        }
    }

    pub(super) fn close_document(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri.as_str();
        self.documents.close(uri);
        self.shown.forget(uri);
    }

    /// `textDocument/inlineCompletion`: one item inserting the suggestion at the cursor.
    pub(super) async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> jsonrpc::Result<InlineCompletionList> {
        let at = params.text_document_position;
        let items = match self
            .suggest(at.text_document.uri.as_str(), at.position)
            .await?
        {
            None => vec![],
            Some(s) => {
                let cursor = s.doc.position(s.cursor);
                vec![InlineCompletionItem {
                    insert_text: s.text,
                    filter_text: None,
                    range: Some(Range::new(cursor, cursor)),
                    command: None,
                    insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                }]
            }
        };
        Ok(InlineCompletionList { items })
    }

    /// `textDocument/completion`, for clients without inline completion: the suggestion as
    /// one item that sorts first. The item replaces the word before the cursor with that
    /// word and the suggestion, so clients that filter by the typed word keep it.
    ///
    /// Where the client takes snippets the item is one (with `$`, `}` and `\\` escaped, so
    /// it has no placeholders): clients take a plain-text edit's first word as what the
    /// menu inserts (Neovim does), but a snippet whole.
    pub(super) async fn completion_item(
        &self,
        params: CompletionParams,
    ) -> jsonrpc::Result<Option<CompletionResponse>> {
        let invoked = params
            .context
            .as_ref()
            .is_none_or(|c| c.trigger_kind == CompletionTriggerKind::INVOKED);
        if !invoked {
            return Ok(None);
        }
        let at = params.text_document_position;
        let Some(s) = self
            .suggest(at.text_document.uri.as_str(), at.position)
            .await?
        else {
            return Ok(None);
        };
        let word_start = word_start(&s.doc, s.cursor);
        let word = s.doc.text.slice(word_start..s.cursor).to_string();
        let new_text = format!("{word}{}", s.text);
        let first_line = new_text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let (format, edit_text) = if self.features().snippets {
            (InsertTextFormat::SNIPPET, escape_snippet(&new_text))
        } else {
            (InsertTextFormat::PLAIN_TEXT, new_text.clone())
        };
        let item = CompletionItem {
            // Some clients insert the label itself (Neovim's omnifunc does, for a snippet):
            // it is the whole first line, never shortened.
            label: first_line.trim_start().to_string(),
            kind: Some(CompletionItemKind::TEXT),
            detail: Some("cfgate".into()),
            documentation: Some(Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: format!("```{}\n{}\n```", s.doc.language, new_text),
            })),
            preselect: Some(true),
            sort_text: Some("0".into()),
            filter_text: Some(first_line.to_string()),
            insert_text_format: Some(format),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit {
                range: Range::new(s.doc.position(word_start), s.doc.position(s.cursor)),
                new_text: edit_text,
            })),
            ..CompletionItem::default()
        };
        Ok(Some(CompletionResponse::List(CompletionList {
            is_incomplete: false,
            items: vec![item],
        })))
    }

    /// The suggestion at `pos`: from the last one shown if the user is typing through it,
    /// else from the model, unless a newer request for the document comes first.
    async fn suggest(&self, uri: &str, pos: Position) -> jsonrpc::Result<Option<Suggested>> {
        let Some(doc) = self.documents.snapshot(uri) else {
            debug!("completion asked for a document that is not open: {uri}");
            return Ok(None);
        };
        let cursor = doc.offset(pos);
        if let Some(text) = self.shown.rest(uri, &doc.text, cursor) {
            return Ok(Some(Suggested { doc, cursor, text }));
        }
        let (id, superseded) = self.in_flight.start(uri);
        let settings = self.client_settings();
        let context = crate::suggest::context(
            &doc.text,
            cursor,
            self.service.completion_context_chars(&settings),
        );
        let params = CompleteParams {
            prefix: context.prefix,
            suffix: Some(context.suffix),
            language: Some(doc.language.clone()),
            path: Some(display_path(uri)),
            ..CompleteParams::default()
        };
        let work = async {
            let completion = self.service.complete(&settings, params, false).await?;
            let (result, _) = completion.finish().await?;
            Ok::<_, Error>(result.text)
        };
        let outcome = tokio::select! {
            text = work => Some(text),
            _ = superseded => None,
        };
        self.in_flight.end(uri, id);
        let Some(text) = outcome else {
            return Err(jsonrpc::Error {
                code: ErrorCode::RequestCancelled,
                message: "superseded by a newer completion request for this document".into(),
                data: None,
            });
        };
        let text = text.map_err(to_rpc_error)?;
        if text.is_empty() {
            return Ok(None);
        }
        self.shown.remember(uri, &doc.text, cursor, &text);
        Ok(Some(Suggested { doc, cursor, text }))
    }
}

pub(super) fn not_open(uri: &str) -> jsonrpc::Error {
    jsonrpc::Error::invalid_params(format!(
        "{uri} is not open (send textDocument/didOpen first)"
    ))
}

/// Where the identifier before `cursor` starts, on the cursor's line.
fn word_start(doc: &Snapshot, cursor: usize) -> usize {
    let line_start = doc.text.line_to_char(doc.text.char_to_line(cursor));
    let mut start = cursor;
    while start > line_start {
        let c = doc.text.char(start - 1);
        if !(c.is_alphanumeric() || c == '_') {
            break;
        }
        start -= 1;
    }
    start
}

/// `text` as an LSP snippet that inserts exactly `text`.
fn escape_snippet(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '$' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A file URI as a path for the prompt; other URIs as they are.
fn display_path(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| uri.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn snippets_escape_what_the_syntax_uses() {
        assert_eq!(super::escape_snippet(r"f(${x}) \ $1"), r"f(\${x\}) \\ \$1");
    }
}
