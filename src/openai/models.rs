//! `GET /v1/models`: `cfgate/models` in OpenAI's list shape, cfgate's details (context
//! window, tool calling, prices) kept as extra keys of each model.

use http::StatusCode;
use jsonrpsee::server::HttpResponse;
use serde_json::{Value, json};

use super::errors::{error_response, json_response, refusal};
use crate::config::Layer;
use crate::protocol::{ModelInfo, ModelsParams};
use crate::service::Service;

pub async fn list(service: &Service) -> HttpResponse {
    match service
        .models(&Layer::default(), ModelsParams::default())
        .await
    {
        Ok(result) => {
            let data: Vec<Value> = result.models.iter().map(model_object).collect();
            json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
        }
        Err(err) => error_response(&err),
    }
}

/// `GET /v1/models/{id}` (the SDKs' `models.retrieve`); ids hold slashes, so all the rest
/// of the path is the id, which the SDKs send percent-encoded (`workers-ai%2F@cf%2F...`).
pub async fn one(service: &Service, id: &str) -> HttpResponse {
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    let id = id.as_ref();
    match service
        .models(&Layer::default(), ModelsParams::default())
        .await
    {
        Ok(result) => match result.models.iter().find(|m| m.id == id) {
            Some(model) => json_response(StatusCode::OK, &model_object(model)),
            None => refusal(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                &format!("the model {id} is not in the gateway's list (see GET /v1/models)"),
            ),
        },
        Err(err) => error_response(&err),
    }
}

fn model_object(model: &ModelInfo) -> Value {
    let mut object = serde_json::to_value(model).unwrap_or_else(|_| json!({"id": model.id}));
    if let Some(map) = object.as_object_mut() {
        map.insert("object".into(), Value::from("model"));
        // The gateway does not say when a model was made; 0 keeps the field an integer.
        map.insert("created".into(), Value::from(0));
        if model.owned_by.is_none() {
            map.insert("owned_by".into(), Value::from("cloudflare"));
        }
    }
    object
}
