//! The AI code actions of the plain language server (explain, fix, add docs): offered on a
//! non-empty selection, run through `workspace/executeCommand`. Fix and docs end in a
//! `workspace/applyEdit` that names the document version the edit was made for, so an
//! edit never lands on code that changed while the model worked.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower_lsp_server::jsonrpc::{self, ErrorCode};
use tower_lsp_server::ls_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionParams, CodeActionResponse, Command,
    DocumentChanges, ExecuteCommandParams, MessageType, OneOf,
    OptionalVersionedTextDocumentIdentifier, Range, TextDocumentEdit, TextEdit, Uri, WorkspaceEdit,
};

use super::language::not_open;
use super::lsp::{Backend, to_rpc_error};
use crate::actions::Action;
use crate::protocol::ChatParams;

/// Arguments of cfgate's commands: the selection they work on.
#[derive(Deserialize)]
struct Target {
    uri: Uri,
    range: Range,
}

impl Backend {
    /// `textDocument/codeAction`: cfgate's actions on a non-empty selection.
    pub(super) fn code_actions(&self, params: CodeActionParams) -> Option<CodeActionResponse> {
        let doc = self.documents.snapshot(params.text_document.uri.as_str())?;
        let range = doc.clamp(params.range);
        if doc.text_in(range).trim().is_empty() {
            return None;
        }
        let only: Option<Vec<String>> = params
            .context
            .only
            .map(|kinds| kinds.iter().map(|k| k.as_str().to_string()).collect());
        let target = json!({"uri": params.text_document.uri, "range": range});
        let actions: Vec<CodeActionOrCommand> = Action::ALL
            .into_iter()
            .filter(|a| a.wanted_by(only.as_deref()))
            .map(|a| {
                CodeActionOrCommand::CodeAction(CodeAction {
                    title: a.title().into(),
                    kind: a.kind().map(|k| CodeActionKind::from(k.to_string())),
                    command: Some(Command {
                        title: a.title().into(),
                        command: a.command().into(),
                        arguments: Some(vec![target.clone()]),
                    }),
                    ..CodeAction::default()
                })
            })
            .collect();
        (!actions.is_empty()).then_some(actions)
    }

    /// `workspace/executeCommand` for cfgate's actions. Fix and docs end in a
    /// `workspace/applyEdit` to the client; explain in a `window/showMessage`. The result
    /// says what happened: `{"applied": bool, "failureReason"?}` or `{"explanation": text}`.
    pub(super) async fn run_command(
        &self,
        params: ExecuteCommandParams,
    ) -> jsonrpc::Result<Option<Value>> {
        let action = Action::from_command(&params.command).ok_or_else(|| {
            jsonrpc::Error::invalid_params(format!("unknown command {:?}", params.command))
        })?;
        let target: Target = params
            .arguments
            .into_iter()
            .next()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| jsonrpc::Error::invalid_params(format!("{}: {e}", action.command())))?
            .ok_or_else(|| {
                jsonrpc::Error::invalid_params(format!(
                    "{} takes one argument: {{\"uri\", \"range\"}}",
                    action.command()
                ))
            })?;
        let doc = self
            .documents
            .snapshot(target.uri.as_str())
            .ok_or_else(|| not_open(target.uri.as_str()))?;
        let range = doc.clamp(target.range);
        let selected = doc.text_in(range);
        if selected.trim().is_empty() {
            return Err(jsonrpc::Error::invalid_params(
                "the selection is empty: select the code first",
            ));
        }
        let messages = action.prompt(&doc.language, &selected);
        let settings = self.client_settings();
        let answer = async {
            let chat = self
                .service
                .chat(
                    &settings,
                    ChatParams {
                        messages,
                        ..ChatParams::default()
                    },
                    false,
                )
                .await?;
            chat.finish().await
        }
        .await
        .map_err(to_rpc_error)?;

        if !action.edits() {
            self.client
                .show_message(MessageType::INFO, format!("cfgate: {}", answer.content))
                .await;
            return Ok(Some(json!({"explanation": answer.content})));
        }
        // The model took a while: if the document changed meanwhile, the selection may
        // not hold the same text any more, and the edit would land on the wrong code.
        let now = self.documents.snapshot(target.uri.as_str());
        if now.map(|d| d.version) != Some(doc.version) {
            return Err(jsonrpc::Error {
                code: ErrorCode::ContentModified,
                message: "the document changed while cfgate was working; run the action again"
                    .into(),
                data: None,
            });
        }
        let edit = TextEdit {
            range,
            new_text: action.replacement(&selected, &answer.content),
        };
        let workspace_edit = if self.features().versioned_edits {
            WorkspaceEdit {
                document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                    text_document: OptionalVersionedTextDocumentIdentifier {
                        uri: target.uri,
                        version: Some(doc.version),
                    },
                    edits: vec![OneOf::Left(edit)],
                }])),
                ..WorkspaceEdit::default()
            }
        } else {
            WorkspaceEdit {
                changes: Some(HashMap::from([(target.uri, vec![edit])])),
                ..WorkspaceEdit::default()
            }
        };
        let reply = self.client.apply_edit(workspace_edit).await?;
        let mut result = Map::new();
        result.insert("applied".into(), reply.applied.into());
        if let Some(reason) = reply.failure_reason {
            result.insert("failureReason".into(), reason.into());
        }
        Ok(Some(Value::Object(result)))
    }
}
