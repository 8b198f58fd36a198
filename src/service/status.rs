//! `cfgate/status`: the settings a client's requests will use (never a secret), what is
//! missing, and the daemon's counters, clients and sessions.

use std::sync::atomic::Ordering;

use super::Service;
use crate::config::{self, Layer};
use crate::protocol::{BudgetStatus, RequestCounts, StatusResult};

impl Service {
    /// `cfgate/status` with the stored sessions, as every front end answers it.
    pub async fn full_status(&self, client: &Layer) -> StatusResult {
        let mut status = self.status(client);
        match self.sessions().await {
            Ok(sessions) => status.sessions = sessions,
            Err(e) => tracing::warn!("status without sessions: {e}"),
        }
        status
    }

    pub fn status(&self, client: &Layer) -> StatusResult {
        let merged = client.over(&self.base);
        let resolved = merged.resolve();
        let (missing, settings_error) = match &resolved {
            Err(config::SettingsError::Missing(names)) => (names.clone(), None),
            Err(e @ config::SettingsError::Invalid { .. }) => (vec![], Some(e.to_string())),
            Ok(_) => (vec![], None),
        };
        let settings_error = match &self.config_error {
            Some(err) => Some(err.message.clone()),
            None => settings_error,
        };
        StatusResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            credentials_complete: missing.is_empty(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
            settings_error,
            account_id: merged.account_id.as_deref().map(config::mask),
            gateway_id: merged
                .gateway_id
                .clone()
                .unwrap_or_else(|| config::DEFAULT_GATEWAY_ID.to_string()),
            base_url: resolved.as_ref().ok().map(|s| s.base_url.clone()),
            endpoint: merged.endpoint.unwrap_or_default().name().to_string(),
            auth_headers: resolved
                .as_ref()
                .map(|s| s.auth_plan().headers())
                .unwrap_or_default(),
            model: merged
                .model
                .clone()
                .unwrap_or_else(|| config::DEFAULT_MODEL.to_string()),
            completion_context_chars: self.completion_context_chars(client),
            uptime_secs: self.started.elapsed().as_secs(),
            requests: RequestCounts {
                total: self.counters.total.load(Ordering::Relaxed),
                in_flight: self.counters.in_flight.load(Ordering::Relaxed),
                failed: self.counters.failed.load(Ordering::Relaxed),
                retries: self.counters.retries.load(Ordering::Relaxed),
                queued: self.gateway.queued(),
            },
            debug_tasks: if cfg!(debug_assertions) {
                tokio::runtime::Handle::try_current()
                    .ok()
                    .map(|h| h.metrics().num_alive_tasks() as u64)
            } else {
                None
            },
            clients: self.clients(),
            budgets: self
                .gateway
                .budgets()
                .views(resolved.as_ref().ok().and_then(|s| s.requests_per_minute))
                .into_iter()
                .map(|b| BudgetStatus {
                    gateway: b.label,
                    limit: b.limit,
                    learned: b.learned,
                    used_last_minute: b.used_last_minute,
                    cool_down_ms: b.cool_down_ms,
                })
                .collect(),
            sessions: Vec::new(),
        }
    }
}
