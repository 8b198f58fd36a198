//! The LSP face of the service: lifecycle, settings from the client, and cfgate's methods
//! with their `$/progress` streams. Handlers only translate; the work is in [`Service`].

use std::sync::{Arc, OnceLock, RwLock};

use serde::Deserialize;
use tower_lsp_server::jsonrpc::{self, ErrorCode};
use tower_lsp_server::ls_types::{
    CodeActionParams, CodeActionResponse, CompletionParams, CompletionResponse,
    DidChangeConfigurationParams, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, ExecuteCommandParams, InitializeParams, InitializeResult,
    InitializedParams, LSPAny, MessageType, ServerCapabilities, ServerInfo,
};
use tower_lsp_server::{Client, ClientSocket, LanguageServer, LspService};
use tracing::{info, warn};

use super::connection::Outbox;
use super::language::{self, ClientFeatures, InFlight};
use crate::clients::ClientHandle;
use crate::config::{ClientSettings, Layer};
use crate::documents::Documents;
use crate::error::Error;
use crate::protocol::{
    ChatParams, ChatResult, CompleteParams, CompleteResult, METHODS, ModelsParams, ModelsResult,
    Piece, ProgressParams, ProgressToken, ProgressValue, StatusResult,
};
use crate::service::Service;
use crate::sessions::{SessionDeleteResult, SessionParams, SessionResult, SessionsResult};
use crate::suggest::Shown;

pub struct Backend {
    pub(super) client: Client,
    pub(super) service: Arc<Service>,
    outbox: Outbox,
    /// This client's settings (initializationOptions, then didChangeConfiguration).
    /// Read into an owned copy at the start of each request; never held across an await.
    settings: RwLock<ClientSettings>,
    /// This connection in the daemon's list of clients, while it is open.
    registration: ClientHandle,
    /// Set once by `initialize`.
    features: OnceLock<ClientFeatures>,
    pub(super) documents: Documents,
    pub(super) shown: Shown,
    pub(super) in_flight: InFlight,
}

/// `cfgate/status` takes no params; an empty object (or none) is accepted.
#[derive(Deserialize)]
pub struct NoParams {}

impl Backend {
    pub fn service(service: Arc<Service>, outbox: Outbox) -> (LspService<Backend>, ClientSocket) {
        LspService::build(|client| Backend {
            client,
            registration: service.register_client(Arc::new(outbox.clone())),
            service,
            outbox,
            settings: RwLock::new(ClientSettings::default()),
            features: OnceLock::new(),
            documents: Documents::default(),
            shown: Shown::default(),
            in_flight: InFlight::default(),
        })
        .custom_method("cfgate/chat", Backend::chat)
        .custom_method("cfgate/complete", Backend::complete)
        .custom_method("cfgate/status", Backend::status)
        .custom_method("textDocument/inlineCompletion", Backend::inline_completion)
        .custom_method("cfgate/models", Backend::models)
        .custom_method("cfgate/sessions", Backend::sessions)
        .custom_method("cfgate/session", Backend::session)
        .custom_method("cfgate/sessionDelete", Backend::session_delete)
        .finish()
    }

    pub(super) fn features(&self) -> ClientFeatures {
        self.features.get().copied().unwrap_or_default()
    }

    /// This client's layer of settings, copied out for one request.
    pub(super) fn client_settings(&self) -> Layer {
        let sent = self
            .settings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sent.layer().clone()
    }

    /// Settings are replaced whole, so a poisoned lock still holds a sound value.
    fn settings_mut(&self) -> std::sync::RwLockWriteGuard<'_, ClientSettings> {
        self.settings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // Every handler runs inside the one panic containment around the whole service
    // (`contain.rs`): none of them catches panics itself.

    async fn chat(&self, params: ChatParams) -> jsonrpc::Result<ChatResult> {
        #[cfg(debug_assertions)]
        panic_hook_for_tests(&params);
        let settings = self.client_settings();
        let mut progress = params
            .work_done_token
            .clone()
            .map(|token| WorkDone::begin(&self.outbox, token, "cfgate/chat"));
        if let Some(p) = &mut progress {
            p.send_begin().await;
        }
        let result = async {
            let mut chat = match &progress {
                Some(p) => {
                    let show = |wait| p.report(ProgressValue::rate_limited(wait));
                    self.service
                        .chat_showing_waits(&settings, params, show)
                        .await?
                }
                None => self.service.chat(&settings, params, false).await?,
            };
            let mut first = true;
            while let Some(piece) = chat.next_piece().await? {
                if let Some(p) = &progress {
                    p.report(piece.into()).await;
                    if std::mem::take(&mut first) {
                        // Let the writer send the first piece now, before the rest of a
                        // burst is turned into reports: the user sees the answer start.
                        tokio::task::yield_now().await;
                    }
                }
            }
            chat.finish().await
        }
        .await;
        if let Some(p) = progress {
            p.end().await;
        }
        result.map_err(to_rpc_error)
    }

    async fn complete(&self, params: CompleteParams) -> jsonrpc::Result<CompleteResult> {
        let settings = self.client_settings();
        let mut progress = params
            .work_done_token
            .clone()
            .map(|token| WorkDone::begin(&self.outbox, token, "cfgate/complete"));
        if let Some(p) = &mut progress {
            p.send_begin().await;
        }
        let result = async {
            let mut completion = self
                .service
                .complete(&settings, params, progress.is_some())
                .await?;
            while let Some(text) = completion.next_text().await? {
                if let Some(p) = &progress {
                    p.report(Piece::Content(text).into()).await;
                }
            }
            let (result, rest) = completion.finish().await?;
            if let (Some(p), Some(rest)) = (&progress, rest) {
                p.report(Piece::Content(rest).into()).await;
            }
            Ok::<_, Error>(result)
        }
        .await;
        if let Some(p) = progress {
            p.end().await;
        }
        result.map_err(to_rpc_error)
    }

    async fn sessions(&self, _params: NoParams) -> jsonrpc::Result<SessionsResult> {
        let sessions = self.service.sessions().await.map_err(to_rpc_error)?;
        Ok(SessionsResult { sessions })
    }

    async fn session(&self, params: SessionParams) -> jsonrpc::Result<SessionResult> {
        self.service
            .session(&params.name)
            .await
            .map_err(to_rpc_error)
    }

    async fn session_delete(&self, params: SessionParams) -> jsonrpc::Result<SessionDeleteResult> {
        let deleted = self
            .service
            .delete_session(&params.name)
            .await
            .map_err(to_rpc_error)?;
        Ok(SessionDeleteResult { deleted })
    }

    async fn status(&self, _params: NoParams) -> jsonrpc::Result<StatusResult> {
        Ok(self.service.full_status(&self.client_settings()).await)
    }

    async fn models(&self, params: Option<ModelsParams>) -> jsonrpc::Result<ModelsResult> {
        let settings = self.client_settings();
        let params = params.unwrap_or_default();
        self.service
            .models(&settings, params)
            .await
            .map_err(to_rpc_error)
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> jsonrpc::Result<InitializeResult> {
        // Said at once, not at the first request: an editor shows a failed `initialize`.
        if let Some(err) = self.service.config_error() {
            return Err(to_rpc_error(err.clone()));
        }
        let layer = ClientSettings::from_init(params.initialization_options.as_ref())
            .map_err(|e| jsonrpc::Error::invalid_params(format!("initializationOptions: {e}")))?;
        if let Some(info) = &params.client_info {
            info!(client = %info.name, version = ?info.version, "client connected");
            self.registration
                .set_info(info.name.clone(), info.version.clone());
        }
        let offered = self.service.language_features(layer.layer());
        *self.settings_mut() = layer;
        let features = ClientFeatures::of(&params.capabilities);
        let _ = self.features.set(features);
        // A plugin with its own completion (VS Code's) turns these off: an LSP client
        // library registers every advertised feature, which would show each suggestion twice.
        let language = if offered {
            language::capabilities(features.encoding)
        } else {
            ServerCapabilities::default()
        };
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                experimental: Some(serde_json::json!({ "cfgate": { "methods": METHODS } })),
                ..language
            },
            server_info: Some(ServerInfo {
                name: "cfgate".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {}

    async fn shutdown(&self) -> jsonrpc::Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        self.open_document(params);
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        self.change_document(params);
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        self.close_document(params);
    }

    async fn completion(
        &self,
        params: CompletionParams,
    ) -> jsonrpc::Result<Option<CompletionResponse>> {
        self.completion_item(params).await
    }

    async fn code_action(
        &self,
        params: CodeActionParams,
    ) -> jsonrpc::Result<Option<CodeActionResponse>> {
        Ok(self.code_actions(params))
    }

    async fn execute_command(
        &self,
        params: ExecuteCommandParams,
    ) -> jsonrpc::Result<Option<LSPAny>> {
        self.run_command(params).await
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        // Updated under the write lock, which is let go before the await below.
        let updated = {
            let mut sent = self.settings_mut();
            sent.update(&params.settings).map(|updated| *sent = updated)
        };
        if let Err(e) = updated {
            warn!("didChangeConfiguration ignored: {e}");
            self.client
                .show_message(
                    MessageType::ERROR,
                    format!("cfgate: settings not applied: {e}"),
                )
                .await;
        }
    }
}

/// LSP work-done progress on the client's token. `end` is sent even when the request fails
/// or is cancelled, so a plugin's spinner never stays on.
struct WorkDone {
    outbox: Outbox,
    token: ProgressToken,
    title: &'static str,
    ended: bool,
}

impl WorkDone {
    fn begin(outbox: &Outbox, token: ProgressToken, title: &'static str) -> WorkDone {
        WorkDone {
            outbox: outbox.clone(),
            token,
            title,
            ended: false,
        }
    }

    async fn send_begin(&mut self) {
        self.send(ProgressValue::Begin { title: self.title }).await;
    }

    async fn report(&self, value: ProgressValue) {
        self.send(value).await;
    }

    async fn end(mut self) {
        self.ended = true;
        self.send(ProgressValue::End {}).await;
    }

    async fn send(&self, value: ProgressValue) {
        let params = ProgressParams {
            token: &self.token,
            value,
        };
        self.outbox.try_notify("$/progress", params);
    }
}

impl Drop for WorkDone {
    fn drop(&mut self) {
        if !self.ended {
            let params = ProgressParams {
                token: &self.token,
                value: ProgressValue::End {},
            };
            self.outbox.try_notify("$/progress", params);
        }
    }
}

/// Debug builds only: a chat whose last message is `$CFGATE_TEST_PANIC` panics, so tests
/// can prove a panic stays inside its request.
#[cfg(debug_assertions)]
fn panic_hook_for_tests(params: &ChatParams) {
    let Ok(trigger) = std::env::var("CFGATE_TEST_PANIC") else {
        return;
    };
    let last = params.messages.last().and_then(|m| m.get("content"));
    if last.and_then(|c| c.as_str()) == Some(trigger.as_str()) {
        panic!("test panic requested");
    }
}

pub fn to_rpc_error(err: Error) -> jsonrpc::Error {
    jsonrpc::Error {
        code: ErrorCode::from(err.kind.code()),
        message: err.message.clone().into(),
        data: Some(err.data()),
    }
}
