//! `cfgate/models`: the model list of the endpoint in use, with the catalog's details,
//! cached for a while (one list per URL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use super::{Service, lock};
use crate::config::{Endpoint, Layer};
use crate::error::Error;
use crate::gateway::models::{ModelSource, ModelsRequest, merge_catalog};
use crate::protocol::{ModelsParams, ModelsResult};
use crate::route::{route_model, same_model};

/// How long a model list is served from the cache.
pub const MODELS_TTL: Duration = Duration::from_secs(600);

/// How long a compat listing waits for the catalog's details before going without.
const CATALOG_DETAILS_TIMEOUT: Duration = Duration::from_secs(15);

impl Service {
    /// The context window of `model` from the model lists in memory; never fetches.
    pub(super) fn known_context_window(&self, model: &str) -> Option<u64> {
        lock(&self.models)
            .values()
            .flat_map(|(_, list, _)| list.iter())
            .find(|m| same_model(&m.id, model))
            .and_then(|m| m.context_window)
    }

    /// The models the gateway offers, from the cache when fresh (see [`MODELS_TTL`]).
    pub async fn models(
        &self,
        client: &Layer,
        params: ModelsParams,
    ) -> Result<ModelsResult, Error> {
        let settings = self.settings(client, &Layer::default())?;
        let catalog_url = settings
            .account_id
            .as_ref()
            .map(|account| format!("{}/accounts/{account}/ai/models/search", settings.api_url));
        let url = match settings.endpoint {
            Endpoint::Compat => format!("{}/models", settings.base_url),
            Endpoint::Rest => catalog_url.clone().unwrap_or_default(),
        };
        if !params.refresh {
            let cached = lock(&self.models).get(&url).cloned();
            if let Some((at, models, source)) = cached.filter(|(at, ..)| at.elapsed() < MODELS_TTL)
            {
                return Ok(ModelsResult {
                    models: models.as_ref().clone(),
                    source: source.into(),
                    cached: true,
                    age_secs: at.elapsed().as_secs(),
                });
            }
        }
        // The catalog is the Cloudflare API's: the API token in `Authorization`, nothing else.
        let catalog = |url: String, timeout| ModelsRequest {
            url,
            source: ModelSource::CatalogSearch,
            token: Some(settings.api_token.clone()),
            gateway_token: None,
            timeout,
        };
        let (models, source) = match settings.endpoint {
            Endpoint::Rest => {
                let mut models = self
                    .gateway
                    .list_models(&catalog(url.clone(), settings.timeout))
                    .await?;
                for model in &mut models {
                    if let Ok(id) = route_model(&model.id, Endpoint::Rest) {
                        model.id = id;
                    }
                }
                (models, "catalog")
            }
            Endpoint::Compat => {
                let (token, gateway_token) = settings.auth_tokens();
                let list = ModelsRequest {
                    url: url.clone(),
                    source: ModelSource::CompatList,
                    token,
                    gateway_token,
                    timeout: settings.timeout,
                };
                // The catalog adds Workers AI details; it needs the account and the Cloudflare
                // token, and the list is worth having without it.
                let has_token = !settings.api_token.expose_secret().trim().is_empty();
                let details = catalog_url
                    .filter(|_| has_token)
                    .map(|u| catalog(u, settings.timeout.min(CATALOG_DETAILS_TIMEOUT)));
                let (list, details) =
                    futures_util::future::join(self.gateway.list_models(&list), async {
                        match &details {
                            Some(req) => Some(self.gateway.list_models(req).await),
                            None => None,
                        }
                    })
                    .await;
                let mut models = list?;
                match details {
                    Some(Ok(catalog)) => {
                        merge_catalog(&mut models, &catalog);
                        (models, "compat+catalog")
                    }
                    Some(Err(e)) => {
                        tracing::warn!("model catalog not read, listing without details: {e}");
                        (models, "compat")
                    }
                    None => (models, "compat"),
                }
            }
        };
        let models = Arc::new(models);
        lock(&self.models).insert(url, (Instant::now(), models.clone(), source));
        Ok(ModelsResult {
            models: models.as_ref().clone(),
            source: source.into(),
            cached: false,
            age_secs: 0,
        })
    }
}
