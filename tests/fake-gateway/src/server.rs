//! The HTTP side: accept loop, connection handling, routing (gateway-wire.md sections 2, 3
//! and 8) and the control endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::answer::{Answer, DropGuard, PlanBody, Step, apply_fault, raw_plan};
use crate::wire::{gateway_error, uuid, uuid_v7, v4_error};
use crate::{CacheEntry, Fault, RecordedRequest, Script, Shared, lock, naming};

type RespBody = UnsyncBoxBody<Bytes, std::io::Error>;
type Headers = Vec<(String, String)>;

/// Accepts connections until the task is aborted (dropping the [`JoinSet`] aborts every
/// connection task with it).
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connection_accepted();
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                // Transient accept errors (e.g. EMFILE): back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Small SSE frames must leave at once (no Nagle).
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        service_fn(move |req| handle(shared.clone(), kill.clone(), req))
    };
    let mut conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = &mut conn => {}
        _ = kill.notified() => {
            // Fault::ResetBeforeHeaders: abort with RST (SO_LINGER 0) instead of a FIN.
            let tcp = conn.into_parts().io.into_inner();
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
    }
}

/// What to answer, before the per-request headers are added.
enum Reply {
    Full {
        status: u16,
        headers: Headers,
        body: Bytes,
    },
    Stream {
        status: u16,
        headers: Headers,
        steps: Vec<Step>,
    },
    /// Abort the connection without answering.
    Reset,
    /// Never answer.
    Stall,
    /// Answer this once [`crate::FakeGateway::release`] is called.
    Held(Box<Reply>),
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body),
        }
    }

    fn sse(steps: Vec<Step>) -> Reply {
        Reply::Stream {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            steps,
        }
    }

    fn set_status(&mut self, new: u16) {
        if let Reply::Full { status, .. } | Reply::Stream { status, .. } = self {
            *status = new;
        }
    }

    /// Adds headers; a name given here replaces the reply's own header of that name.
    fn merge_headers(&mut self, extra: &[(String, String)]) {
        if let Reply::Full { headers, .. } | Reply::Stream { headers, .. } = self {
            headers.retain(|(n, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(n)));
            headers.extend(extra.iter().cloned());
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path = parts.uri.path().to_string();
    if path == "/__fake" || path.starts_with("/__fake/") {
        return Ok(control(&shared, parts.method.as_str(), &path, &raw));
    }
    let record = RecordedRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(&raw).into_owned(),
        at_ms: shared.started.elapsed().as_millis() as u64,
    };
    shared.record(record.clone());
    let mut reply = route(&shared, &record);
    if let Reply::Held(held) = reply {
        let _ = shared
            .released
            .subscribe()
            .wait_for(|released| *released)
            .await;
        reply = *held;
    }
    let response = match reply {
        Reply::Held(_) => unreachable!("a held reply is unwrapped above"),
        Reply::Reset => {
            kill.notify_one();
            std::future::pending().await
        }
        Reply::Stall => std::future::pending().await,
        Reply::Full {
            status,
            headers,
            body,
        } => respond(
            status,
            headers,
            record.header("cf-aig-event-id"),
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        ),
        Reply::Stream {
            status,
            headers,
            steps,
        } => respond(
            status,
            headers,
            record.header("cf-aig-event-id"),
            PlanBody::new(steps, DropGuard::new(shared.clone())).boxed_unsync(),
        ),
    };
    Ok(response)
}

/// Builds the response, adding the per-request `cf-aig-*` headers (section 3.2) that the
/// reply does not already carry. Header names/values a script made invalid are skipped.
fn respond(
    status: u16,
    mut headers: Headers,
    caller_event_id: Option<&str>,
    body: RespBody,
) -> Response<RespBody> {
    // Section 10.6: one lowercase UUIDv7 for all three ids of a single-step request; an
    // event id the caller set is echoed back.
    let id = uuid_v7();
    let event_id = caller_event_id.map_or_else(|| id.clone(), str::to_string);
    let standard = [
        ("cf-aig-log-id", id.clone()),
        ("cf-aig-event-id", event_id),
        ("cf-aig-request-id", id),
        ("cf-aig-step", "0".to_string()),
        ("cf-aig-cache-status", "MISS".to_string()),
    ];
    for (name, value) in standard {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            headers.push((name.to_string(), value));
        }
    }
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn json_response(status: u16, body: &Value) -> Response<RespBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `/__fake/*`: not recorded, no auth.
fn control(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Response<RespBody> {
    match (method, path) {
        ("POST", "/__fake/script") => match serde_json::from_slice::<Script>(body) {
            Ok(script) => {
                shared.push_script(script);
                json_response(200, &json!({"queued": true}))
            }
            Err(e) => json_response(400, &json!({"error": format!("bad script: {e}")})),
        },
        ("POST", "/__fake/reset") => {
            shared.reset();
            json_response(200, &json!({"ok": true}))
        }
        ("GET", "/__fake/requests") => json_response(
            200,
            &serde_json::to_value(shared.requests()).unwrap_or(Value::Null),
        ),
        ("GET", "/__fake/stats") => json_response(200, &shared.stats()),
        _ => json_response(
            404,
            &json!({"error": format!("unknown control endpoint {method} {path}")}),
        ),
    }
}

fn route(shared: &Shared, rec: &RecordedRequest) -> Reply {
    let path = rec.path.as_str();
    if let Some(tail) = path.strip_prefix("/v1/") {
        let mut parts = tail.splitn(4, '/');
        if let (Some(account), Some(gateway), Some("compat")) =
            (parts.next(), parts.next(), parts.next())
        {
            if !account.is_empty() && !gateway.is_empty() {
                let rest = parts.next().unwrap_or("");
                return compat(shared, rec, account, gateway, rest);
            }
        }
    }
    let rest_target = path
        .strip_prefix("/client/v4/accounts/")
        .and_then(|tail| tail.split_once('/'))
        .filter(|(account, rest)| {
            !account.is_empty() && *rest == "ai/v1/chat/completions" && rec.method == "POST"
        });
    if let Some((account, _)) = rest_target {
        return rest_api(shared, rec, account);
    }
    let catalog = path
        .strip_prefix("/client/v4/accounts/")
        .and_then(|tail| tail.split_once('/'))
        .is_some_and(|(account, rest)| {
            !account.is_empty() && rest == "ai/models/search" && rec.method == "GET"
        });
    if catalog {
        return model_search(shared, rec);
    }
    not_found(path)
}

/// Unknown paths: 404 in the Cloudflare v4 envelope (7003, section 5.2).
fn not_found(path: &str) -> Reply {
    Reply::json(
        404,
        v4_error(
            7003,
            &format!("Could not route to {path}, perhaps your object identifier is invalid?"),
        ),
    )
}

fn compat(
    shared: &Shared,
    rec: &RecordedRequest,
    account: &str,
    gateway: &str,
    rest: &str,
) -> Reply {
    if let Some(refusal) = gateway_checks(shared, rec, gateway, Endpoint::Compat) {
        return refusal;
    }
    match (rec.method.as_str(), rest) {
        ("POST", "chat/completions") => chat(shared, rec, account, gateway, Endpoint::Compat),
        ("GET", "models") => Reply::json(200, models_list()),
        _ => Reply::json(
            400,
            gateway_error(
                400,
                2019,
                &format!("Compatibility endpoint: {rest} is not supported."),
            ),
        ),
    }
}

/// `POST /client/v4/accounts/{account}/ai/v1/chat/completions` (section 2.1, successor of
/// compat). A missing `cf-aig-gateway-id` is answered like an unknown gateway: 400
/// `AiGatewayError` 2001 (the closest documented shape; the real answer is UNCONFIRMED).
fn rest_api(shared: &Shared, rec: &RecordedRequest, account: &str) -> Reply {
    let Some(gateway) = rec
        .header("cf-aig-gateway-id")
        .map(str::trim)
        .filter(|g| !g.is_empty())
    else {
        return Reply::json(400, err_2001());
    };
    if let Some(refusal) = gateway_checks(shared, rec, gateway, Endpoint::Rest) {
        return refusal;
    }
    chat(shared, rec, account, gateway, Endpoint::Rest)
}

fn err_2001() -> String {
    gateway_error(
        400,
        2001,
        "Please configure AI Gateway in the Cloudflare dashboard",
    )
}

fn bearer(value: Option<&str>) -> Option<&str> {
    let value = value?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Where a request is answered: the endpoint decides the gateway-auth header and the
/// model spellings (section 10).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Compat,
    Rest,
}

/// Gateway id (2001), gateway auth (2009), then the Cloudflare token (10000); sections 2.2
/// and 10.2. An authenticated gateway accepts any token of the account with AI Gateway
/// permission (here: the fake's `gateway_token` and `api_token`), in `cf-aig-authorization`
/// on compat and in `Authorization` on REST.
fn gateway_checks(
    shared: &Shared,
    rec: &RecordedRequest,
    gateway: &str,
    endpoint: Endpoint,
) -> Option<Reply> {
    let config = &shared.config;
    if let Some(known) = &config.known_gateways {
        if !known.iter().any(|k| k == gateway) {
            return Some(Reply::json(400, err_2001()));
        }
    }
    let aig = bearer(rec.header("cf-aig-authorization"));
    if config.authenticated || config.gateway_token.is_some() {
        let sent = match endpoint {
            Endpoint::Compat => aig,
            Endpoint::Rest => bearer(rec.header("authorization")),
        };
        let accepted = [&config.gateway_token, &config.api_token];
        let ok = match sent {
            Some(token) if accepted.iter().any(|t| t.is_some()) => {
                accepted.iter().any(|t| t.as_deref() == Some(token))
            }
            Some(token) => !token.is_empty(),
            None => false,
        };
        if !ok {
            return Some(Reply::json(401, gateway_error(401, 2009, "Unauthorized")));
        }
    }
    if let Some(token) = &config.api_token {
        let authorization = bearer(rec.header("authorization"));
        if authorization != Some(token.as_str()) && aig != Some(token.as_str()) {
            return Some(Reply::json(401, v4_error(10000, "Authentication error")));
        }
    }
    if let (Some(aliases), Some(alias)) = (&config.byok_aliases, rec.header("cf-aig-byok-alias")) {
        if !aliases.iter().any(|a| a == alias.trim()) {
            let provider = rec
                .body
                .get("model")
                .and_then(Value::as_str)
                .and_then(|m| m.split_once('/'))
                .map_or("unknown", |(p, _)| p);
            let message = format!(
                "Provider '{provider}' has no BYOK credential named '{}'. Configured aliases: {}",
                alias.trim(),
                aliases.join(", ")
            );
            return Some(Reply::json(400, gateway_error(400, 2040, &message)));
        }
    }
    None
}

/// The Cloudflare API model search (section 6): the v4 envelope with the catalog entries
/// of the asked `task` (all when none is asked), paged by `page` / `per_page`. Needs the
/// Cloudflare token in `Authorization` when the fake has one.
fn model_search(shared: &Shared, rec: &RecordedRequest) -> Reply {
    if let Some(token) = &shared.config.api_token {
        if bearer(rec.header("authorization")) != Some(token.as_str()) {
            return Reply::json(401, v4_error(10000, "Authentication error"));
        }
    }
    let query: Vec<(String, String)> = rec
        .query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let task = get("task");
    let page: usize = get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let per_page: usize = get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .max(1);
    let price = |input: f64, output: f64| {
        json!([
            {"unit": "per M input tokens", "price": input, "currency": "USD"},
            {"unit": "per M output tokens", "price": output, "currency": "USD"},
        ])
    };
    let entry = |name: &str, task: &str, props: Value| {
        json!({
            "id": uuid(), "source": 1, "name": name, "description": format!("{name} (fake)"),
            "task": {"id": uuid(), "name": task, "description": ""},
            "created_at": "2024-12-06 17:09:18.338", "tags": [], "properties": props,
        })
    };
    let all = [
        entry(
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            "Text Generation",
            json!([
                {"property_id": "context_window", "value": "24000"},
                {"property_id": "function_calling", "value": "true"},
                {"property_id": "async_queue", "value": "true"},
                {"property_id": "price", "value": price(0.29, 2.25)},
            ]),
        ),
        entry(
            "@cf/google/gemma-4-26b-a4b-it",
            "Text Generation",
            json!([
                {"property_id": "context_window", "value": 128000},
                {"property_id": "function_calling", "value": true},
                {"property_id": "price", "value": price(0.1, 0.3)},
            ]),
        ),
        entry(
            "@cf/meta/llama-3.1-8b-instruct",
            "Text Generation",
            json!([
                {"property_id": "context_window", "value": "7968"},
                {"property_id": "price", "value": price(0.28, 0.83)},
            ]),
        ),
        entry(
            "@cf/baai/bge-m3",
            "Text Embeddings",
            json!([{"property_id": "price", "value": price(0.012, 0.0)}]),
        ),
    ];
    let matching: Vec<&Value> = all
        .iter()
        .filter(|m| task.is_none_or(|t| m["task"]["name"] == t))
        .collect();
    let shown: Vec<&Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .copied()
        .collect();
    let body = json!({
        "success": true, "errors": [], "messages": [], "result": shown,
        "result_info": {"page": page, "per_page": per_page, "count": shown.len(), "total_count": matching.len()},
    });
    Reply::json(200, body.to_string())
}

/// The observed `/compat/models` shape (section 2.1, Observed).
fn models_list() -> String {
    let model = |id: &str, created: u64, cost_in: Value, cost_out: Value, owner: &str| {
        json!({
            "id": id,
            "object": "model",
            "created_at": created,
            "cost_in": cost_in,
            "cost_out": cost_out,
            "owned_by": owner,
        })
    };
    json!({
        "object": "list",
        "data": [
            model("workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", 1_733_505_758, json!(0.29), json!(2.25), "workers-ai"),
            model("workers-ai/@cf/google/gemma-4-26b-a4b-it", 1_775_000_000, json!(0.1), json!(0.3), "workers-ai"),
            model("openai/gpt-5-mini", 1_754_500_000, json!(0.25), json!(2.0), "openai"),
            model("google-ai-studio/gemini-2.5-flash", 1_750_000_000, json!(0.3), json!(2.5), "google-ai-studio"),
            model("anthropic/claude-sonnet-4-5", 1_759_000_000, Value::Null, Value::Null, "anthropic"),
        ],
    })
    .to_string()
}

/// The cache key of a cacheable request (section 3.1): non-streamed, with `cf-aig-cache-ttl`
/// or `cf-aig-cache-key`, without `cf-aig-skip-cache: true`. Returns the key and the TTL.
fn cache_key(rec: &RecordedRequest, account: &str, gateway: &str) -> Option<(String, Duration)> {
    let header = |new: &str, old: &str| rec.header(new).or_else(|| rec.header(old));
    if header("cf-aig-skip-cache", "cf-skip-cache")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return None;
    }
    let ttl = header("cf-aig-cache-ttl", "cf-cache-ttl");
    let key = rec.header("cf-aig-cache-key");
    let ttl = match (ttl, key) {
        (Some(t), _) => Duration::from_secs(t.trim().parse().ok()?),
        // A custom key with caching otherwise off is cached for 5 minutes.
        (None, Some(_)) => Duration::from_secs(300),
        (None, None) => return None,
    };
    let body = if rec.body.is_null() {
        rec.raw_body.clone()
    } else {
        rec.body.to_string()
    };
    Some((
        format!("{account}\n{gateway}\n{}\n{body}", key.unwrap_or("")),
        ttl,
    ))
}

/// The gateway's own rate limit, a fixed window (section 10.5): 429 / 2003 past it.
fn rate_limited(shared: &Shared) -> Option<Reply> {
    let limit = shared.config.rate_limit?;
    let mut window = lock(&shared.window);
    let now = Instant::now();
    if now.duration_since(window.0) >= limit.window {
        *window = (now, 0);
    }
    window.1 += 1;
    if window.1 <= limit.requests {
        return None;
    }
    let left = limit.window.saturating_sub(now.duration_since(window.0));
    let mut reply = Reply::json(429, gateway_error(429, 2003, "Rate limited"));
    if limit.retry_after {
        let secs = left.as_millis().div_ceil(1000).max(1);
        reply.merge_headers(&[("retry-after".into(), secs.to_string())]);
    }
    Some(reply)
}

fn chat(
    shared: &Shared,
    rec: &RecordedRequest,
    account: &str,
    gateway: &str,
    endpoint: Endpoint,
) -> Reply {
    if let Some(refusal) = rate_limited(shared) {
        return refusal;
    }
    let req = &rec.body;
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    // Streams are never cached.
    let cache = if stream {
        None
    } else {
        cache_key(rec, account, gateway)
    };
    if let Some((key, _)) = &cache {
        let mut entries = lock(&shared.cache);
        match entries.get(key) {
            Some(hit) if hit.expires > Instant::now() => {
                let mut headers = hit.headers.clone();
                headers.push(("cf-aig-cache-status".into(), "HIT".into()));
                return Reply::Full {
                    status: hit.status,
                    headers,
                    body: hit.body.clone(),
                };
            }
            Some(_) => {
                entries.remove(key);
            }
            None => {}
        }
    }
    let reply = match shared.next_script() {
        Some(script) => scripted(shared, req, &script, stream),
        None => default_chat(shared, req, stream, endpoint),
    };
    if let (
        Some((key, ttl)),
        Reply::Full {
            status: 200,
            headers,
            body,
        },
    ) = (cache, &reply)
    {
        lock(&shared.cache).insert(
            key,
            CacheEntry {
                status: 200,
                headers: headers.clone(),
                body: body.clone(),
                expires: Instant::now() + ttl,
            },
        );
    }
    reply
}

/// Body validation and model routing (sections 2.3, 8.3), then the echo answer.
fn default_chat(shared: &Shared, req: &Value, stream: bool, endpoint: Endpoint) -> Reply {
    let model = req.get("model").and_then(Value::as_str);
    let has_messages = req.get("messages").is_some_and(Value::is_array);
    let Some(model) = model.filter(|_| has_messages) else {
        return Reply::json(400, gateway_error(400, 2019, "Chat completion bad format"));
    };
    let extra = match naming::route(model, endpoint) {
        Ok(headers) => headers,
        Err((status, body)) => return Reply::json(status, body),
    };
    let answer = Answer::new(req, None, shared.config.chunk_delay);
    let mut reply = if stream && !shared.config.buffer_streams {
        Reply::sse(answer.stream_plan())
    } else {
        Reply::json(200, answer.completion_json())
    };
    reply.merge_headers(&extra);
    reply
}

/// A body (non-SSE) with an optional post-headers fault: cut in two frames so that
/// `ResetAfterChunks(1)` / `StallAfterChunks(1)` leave the client with half a body.
fn body_reply(status: u16, body: Bytes, fault: Option<&Fault>) -> Reply {
    let headers: Headers = vec![("content-type".into(), "application/json".into())];
    match fault {
        Some(Fault::ResetAfterChunks(_) | Fault::StallAfterChunks(_) | Fault::DripBytes) => {
            let half = body.len() / 2;
            let steps = vec![
                Step::Data(body.slice(..half)),
                Step::Data(body.slice(half..)),
            ];
            Reply::Stream {
                status,
                headers,
                steps: apply_fault(steps, fault),
            }
        }
        _ => Reply::Full {
            status,
            headers,
            body,
        },
    }
}

fn scripted(shared: &Shared, req: &Value, script: &Script, stream: bool) -> Reply {
    let fault = script.fault.as_ref();
    match fault {
        Some(Fault::ResetBeforeHeaders) => return Reply::Reset,
        Some(Fault::StallBeforeHeaders) => return Reply::Stall,
        _ => {}
    }
    let delay = script
        .chunk_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.chunk_delay);
    let mut reply = if let Some(hostile) = &script.hostile {
        Reply::sse(crate::hostile::plan(hostile))
    } else if let Some(body) = &script.body {
        body_reply(
            script.status.unwrap_or(200),
            Bytes::from(body.clone()),
            fault,
        )
    } else if let Some(raw) = &script.raw_sse {
        let mut steps = raw_plan(raw, script.split_raw_at.as_deref(), delay);
        if script.hold_open {
            steps.push(Step::Hang);
        }
        Reply::sse(apply_fault(steps, fault))
    } else {
        let answer = Answer::new(req, Some(script), shared.config.chunk_delay);
        if stream && !script.buffered && !shared.config.buffer_streams {
            Reply::sse(apply_fault(answer.stream_plan(), fault))
        } else {
            body_reply(200, Bytes::from(answer.completion_json()), fault)
        }
    };
    if let Some(status) = script.status {
        reply.set_status(status);
    }
    reply.merge_headers(&script.headers);
    if script.held {
        reply = Reply::Held(Box::new(reply));
    }
    reply
}
