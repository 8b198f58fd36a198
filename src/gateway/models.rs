//! What models the gateway offers: the compat endpoint's `GET {base}/models` list, or, on
//! the rest endpoint, Cloudflare's model catalog search (wire notes 2.1 and 6), which also
//! knows each Workers AI model's context window, function calling and price.
//!
//! Both are read into one shape so that a plugin and `cfgate models` need not care which
//! endpoint is in use. Caching is the service's concern; this is one fetch.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::SecretString;
use serde_json::Value;

use super::http::{auth_headers, read_limited, transport_error};
use super::{Gateway, upstream_error};
use crate::error::{Error, ErrorKind};
pub use crate::protocol::ModelInfo;
use crate::route::{Endpoint, route_model};

/// A catalog answer larger than this is refused rather than buffered.
const MAX_CATALOG_BODY: usize = 8 * 1024 * 1024;
/// The catalog search is paged; this bounds how many pages one listing reads.
const MAX_PAGES: u32 = 20;
const PER_PAGE: u32 = 100;

/// Where the list comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// `GET {base}/models` on the compat endpoint.
    CompatList,
    /// `GET {api}/accounts/{account}/ai/models/search?task=Text Generation`.
    CatalogSearch,
}

pub struct ModelsRequest {
    /// The full URL without query.
    pub url: String,
    pub source: ModelSource,
    pub token: Option<SecretString>,
    pub gateway_token: Option<SecretString>,
    pub timeout: Duration,
}

impl Gateway {
    /// Fetches the whole list (every page of a catalog search).
    pub async fn list_models(&self, req: &ModelsRequest) -> Result<Vec<ModelInfo>, Error> {
        match req.source {
            ModelSource::CompatList => {
                let json = self.get_json(req, &[]).await?;
                Ok(parse_compat_list(&json))
            }
            ModelSource::CatalogSearch => {
                let mut models = Vec::new();
                for page in 1..=MAX_PAGES {
                    let page_text = page.to_string();
                    let per_page = PER_PAGE.to_string();
                    let query = [
                        ("task", "Text Generation"),
                        ("page", page_text.as_str()),
                        ("per_page", per_page.as_str()),
                    ];
                    let json = self.get_json(req, &query).await?;
                    let found = parse_catalog(&json);
                    let total = json
                        .pointer("/result_info/total_count")
                        .and_then(Value::as_u64);
                    let empty = found.is_empty();
                    models.extend(found);
                    let all_read = total.is_none_or(|t| models.len() as u64 >= t);
                    if empty || all_read {
                        break;
                    }
                }
                Ok(models)
            }
        }
    }

    async fn get_json(&self, req: &ModelsRequest, query: &[(&str, &str)]) -> Result<Value, Error> {
        let mut headers = auth_headers(req.token.as_ref(), req.gateway_token.as_ref())?;
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut url = reqwest::Url::parse(&req.url)
            .map_err(|e| Error::internal(format!("bad model list URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .http()
            .await?
            .get(url)
            .headers(headers)
            .timeout(req.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e, &req.url))?;
        let status = response.status();
        let text = read_limited(response, MAX_CATALOG_BODY, req.timeout).await?;
        if !status.is_success() {
            let mut err = upstream_error::from_response(status.as_u16(), &text, "");
            err.message = format!("listing models: {}", err.message);
            return Err(err);
        }
        serde_json::from_str(&text).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            Error::new(
                ErrorKind::BadResponse,
                format!("the model list is not JSON ({e}): {shown}"),
            )
        })
    }
}

/// `{"object":"list","data":[{"id","owned_by","cost_in","cost_out",...}]}` (Observed).
pub fn parse_compat_list(json: &Value) -> Vec<ModelInfo> {
    let Some(data) = json.get("data").and_then(Value::as_array) else {
        return Vec::new();
    };
    data.iter()
        .filter_map(|m| {
            let id = m.get("id")?.as_str()?.to_string();
            Some(ModelInfo {
                owned_by: m.get("owned_by").and_then(Value::as_str).map(String::from),
                cost_in: m.get("cost_in").and_then(Value::as_f64),
                cost_out: m.get("cost_out").and_then(Value::as_f64),
                context_window: m
                    .get("context_window")
                    .or_else(|| m.get("context_length"))
                    .and_then(number_or_string),
                id,
                ..ModelInfo::default()
            })
        })
        .collect()
}

/// The catalog search's `result` (wire notes 6): properties are mostly strings, sometimes
/// numbers, bools or objects; the price is a list of `{unit, price, currency}`.
pub fn parse_catalog(json: &Value) -> Vec<ModelInfo> {
    let Some(result) = json.get("result").and_then(Value::as_array) else {
        return Vec::new();
    };
    result
        .iter()
        .filter_map(|m| {
            let name = m.get("name")?.as_str()?;
            let mut info = ModelInfo {
                id: route_model(name, Endpoint::Compat).unwrap_or_else(|_| name.to_string()),
                owned_by: Some("workers-ai".into()),
                description: m
                    .get("description")
                    .and_then(Value::as_str)
                    .map(String::from),
                ..ModelInfo::default()
            };
            let properties = m.get("properties").and_then(Value::as_array);
            for property in properties.into_iter().flatten() {
                let value = property.get("value").unwrap_or(&Value::Null);
                match property.get("property_id").and_then(Value::as_str) {
                    Some("context_window") => info.context_window = number_or_string(value),
                    Some("function_calling") => {
                        info.function_calling = match value {
                            Value::Bool(b) => Some(*b),
                            Value::String(s) => s.trim().parse().ok(),
                            _ => None,
                        }
                    }
                    Some("price") => {
                        for price in value.as_array().into_iter().flatten() {
                            let unit = price.get("unit").and_then(Value::as_str).unwrap_or("");
                            let amount = price.get("price").and_then(number_f64);
                            if unit.contains("input") {
                                info.cost_in = amount;
                            } else if unit.contains("output") {
                                info.cost_out = amount;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(info)
        })
        .collect()
}

/// Fills what the gateway's list does not say (context window, function calling, a
/// description, a missing price) from the catalog, for the Workers AI ids both hold.
pub fn merge_catalog(models: &mut [ModelInfo], catalog: &[ModelInfo]) {
    for model in models.iter_mut() {
        let Some(known) = catalog.iter().find(|c| c.id == model.id) else {
            continue;
        };
        model.context_window = model.context_window.or(known.context_window);
        model.function_calling = model.function_calling.or(known.function_calling);
        model.cost_in = model.cost_in.or(known.cost_in);
        model.cost_out = model.cost_out.or(known.cost_out);
        if model.description.is_none() {
            model.description = known.description.clone();
        }
    }
}

fn number_or_string(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_compat_list() {
        let list = parse_compat_list(&json!({"object": "list", "data": [
            {"id": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "object": "model",
             "created_at": 1, "cost_in": 0.29, "cost_out": 2.25, "owned_by": "workers-ai"},
            {"id": "anthropic/claude-sonnet-4-5", "cost_in": null, "cost_out": null, "owned_by": "anthropic"},
            {"object": "model"},
        ]}));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].cost_out, Some(2.25));
        assert_eq!(list[1].cost_in, None);
    }

    #[test]
    fn catalog_details_fill_the_gaps_of_the_list() {
        let mut list = parse_compat_list(&json!({"data": [
            {"id": "workers-ai/@cf/a/b", "cost_in": 0.5, "cost_out": null},
            {"id": "openai/gpt-5-mini", "cost_in": 0.25},
        ]}));
        let catalog = vec![ModelInfo {
            id: "workers-ai/@cf/a/b".into(),
            context_window: Some(8000),
            function_calling: Some(false),
            cost_in: Some(0.9),
            cost_out: Some(1.1),
            ..ModelInfo::default()
        }];
        merge_catalog(&mut list, &catalog);
        assert_eq!(list[0].context_window, Some(8000));
        assert_eq!(list[0].cost_in, Some(0.5), "the gateway's own figure stays");
        assert_eq!(list[0].cost_out, Some(1.1));
        assert_eq!(list[1].context_window, None);
    }

    #[test]
    fn reads_catalog_properties_of_every_type() {
        let list = parse_catalog(&json!({"success": true, "result": [{
            "id": "uuid", "name": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            "description": "Llama 3.3 70B", "task": {"name": "Text Generation"},
            "properties": [
                {"property_id": "context_window", "value": "24000"},
                {"property_id": "function_calling", "value": "true"},
                {"property_id": "price", "value": [
                    {"unit": "per M input tokens", "price": 0.29, "currency": "USD"},
                    {"unit": "per M output tokens", "price": 2.25, "currency": "USD"}]},
                {"property_id": "async_queue", "value": true},
            ]}, {
            "name": "@cf/x/y", "properties": [{"property_id": "context_window", "value": 8192}]
        }]}));
        assert_eq!(
            list[0].id,
            "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
        );
        assert_eq!(list[0].context_window, Some(24000));
        assert_eq!(list[0].function_calling, Some(true));
        assert_eq!(
            (list[0].cost_in, list[0].cost_out),
            (Some(0.29), Some(2.25))
        );
        assert_eq!(list[1].context_window, Some(8192));
    }
}
