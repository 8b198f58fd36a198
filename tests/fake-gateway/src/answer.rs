//! Building chat answers (non-streamed JSON, section 8.7; SSE streams, section 4) and the
//! paced response body that carries them.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{Map, Value, json};

use crate::wire::{alnum, rand64, unix_seconds};
use crate::{Fault, Script, Shared};

/// One step of a response body.
#[derive(Debug)]
pub(crate) enum Step {
    /// A body frame (written and flushed as its own chunk when the next step is not ready).
    Data(Bytes),
    /// Server pacing.
    Delay(Duration),
    /// Return `Pending` once so hyper flushes what it has (used by [`Fault::DripBytes`]).
    Yield,
    /// Fail the body: hyper aborts the connection without the terminating chunk.
    Fail,
    /// Send nothing more, ever (until the client or the fake goes away).
    Hang,
    /// Send this frame again and again, forever (until the client or the fake goes away).
    Repeat(Bytes),
}

/// Marks the stream complete; if dropped before that, counts a dropped stream.
pub(crate) struct DropGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl DropGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> DropGuard {
        DropGuard {
            shared,
            done: false,
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.stream_dropped();
        }
    }
}

/// A response body executing a plan of [`Step`]s.
pub(crate) struct PlanBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    guard: DropGuard,
}

impl PlanBody {
    pub(crate) fn new(steps: Vec<Step>, guard: DropGuard) -> PlanBody {
        PlanBody {
            steps: steps.into(),
            sleep: None,
            guard,
        }
    }
}

impl Body for PlanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            match this.steps.pop_front() {
                None => {
                    this.guard.done = true;
                    return Poll::Ready(None);
                }
                Some(Step::Data(bytes)) => {
                    // The last frame counts as "finished": the fake has nothing more to send.
                    if this.steps.is_empty() {
                        this.guard.done = true;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Some(Step::Delay(d)) => this.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(Step::Yield) => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Fail) => {
                    this.guard.done = true;
                    this.steps.clear();
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fake-gateway: injected connection reset",
                    ))));
                }
                Some(Step::Hang) => {
                    this.steps.push_front(Step::Hang);
                    return Poll::Pending;
                }
                Some(Step::Repeat(bytes)) => {
                    this.steps.push_front(Step::Repeat(bytes.clone()));
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
            }
        }
    }
}

/// Applies a post-headers [`Fault`] to a plan.
pub(crate) fn apply_fault(steps: Vec<Step>, fault: Option<&Fault>) -> Vec<Step> {
    match fault {
        Some(Fault::ResetAfterChunks(n)) => {
            let mut out = take_frames(steps, *n);
            // Let hyper flush the frames first: on a body error it drops its write buffer.
            out.push(Step::Yield);
            out.push(Step::Fail);
            out
        }
        Some(Fault::StallAfterChunks(n)) => {
            let mut out = take_frames(steps, *n);
            out.push(Step::Hang);
            out
        }
        Some(Fault::DripBytes) => {
            let mut out = Vec::new();
            for step in steps {
                match step {
                    Step::Data(bytes) => {
                        for i in 0..bytes.len() {
                            if !out.is_empty() {
                                out.push(Step::Yield);
                            }
                            out.push(Step::Data(bytes.slice(i..i + 1)));
                        }
                    }
                    other => out.push(other),
                }
            }
            out
        }
        _ => steps,
    }
}

/// The first `n` data frames of a plan (with the steps between them), trailing delays dropped.
fn take_frames(steps: Vec<Step>, n: usize) -> Vec<Step> {
    let mut out = Vec::new();
    let mut frames = 0;
    for step in steps {
        if frames >= n {
            break;
        }
        if matches!(step, Step::Data(_)) {
            frames += 1;
        }
        out.push(step);
    }
    out
}

/// Cuts `raw` into frames at the given byte offsets, paced at least 2 ms apart so that the
/// client sees separate reads.
pub(crate) fn raw_plan(raw: &str, split_at: Option<&[usize]>, delay: Duration) -> Vec<Step> {
    let bytes = Bytes::copy_from_slice(raw.as_bytes());
    let mut cuts: Vec<usize> = split_at
        .unwrap_or(&[])
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < bytes.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let pause = delay.max(Duration::from_millis(2));
    let mut steps = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(bytes.len())) {
        if start > 0 {
            steps.push(Step::Delay(pause));
        }
        steps.push(Step::Data(bytes.slice(start..cut)));
        start = cut;
    }
    steps
}

/// Text of a message `content`: a string, or the concatenated `text` parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        _ => String::new(),
    }
}

fn messages(req: &Value) -> &[Value] {
    req.get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `"echo: " + <text of the last user message>`.
pub(crate) fn echo(req: &Value) -> String {
    let last_user = messages(req)
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    format!("echo: {last_user}")
}

/// Word count of all message contents.
pub(crate) fn prompt_tokens(req: &Value) -> u64 {
    messages(req)
        .iter()
        .filter_map(|m| m.get("content"))
        .map(|c| content_text(c).split_whitespace().count() as u64)
        .sum()
}

/// Each word with its following whitespace as one piece (leading whitespace joins the first
/// piece), so the pieces concatenate to `text` exactly.
pub(crate) fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut seen_word = false;
    let mut prev_ws = false;
    for ch in text.chars() {
        let ws = ch.is_whitespace();
        if !ws && prev_ws && seen_word {
            pieces.push(std::mem::take(&mut current));
        }
        if !ws {
            seen_word = true;
        }
        current.push(ch);
        prev_ws = ws;
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// OpenAI's `stop` (a string or up to four): the answer ends before the first place any
/// of them appears, the stop sequence itself not included.
fn cut_at_stop(req: &Value, pieces: &mut Vec<String>, content: &mut Option<String>) {
    let stops: Vec<&str> = match req.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    let Some(text) = content.as_deref() else {
        return;
    };
    let Some(cut) = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s))
        .min()
    else {
        return;
    };
    let mut left = cut;
    let mut kept = Vec::new();
    for piece in pieces.drain(..) {
        if left == 0 {
            break;
        }
        if piece.len() <= left {
            left -= piece.len();
            kept.push(piece);
        } else {
            // A piece cut inside a character (scripted chunks unlike the content) is kept
            // whole.
            kept.push(piece.get(..left).unwrap_or(&piece).to_string());
            left = 0;
        }
    }
    *pieces = kept;
    *content = Some(text[..cut].to_string());
}

/// Splits a string into up to three non-empty parts on char boundaries.
fn split_three(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(3);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Everything needed to render one answer.
pub(crate) struct Answer {
    id: String,
    created: u64,
    model: String,
    reasoning: Vec<String>,
    pieces: Vec<String>,
    /// Non-streamed `message.content`; `None` renders `null` (tool calls without text).
    content: Option<String>,
    tool_calls: Option<Value>,
    finish_reason: String,
    usage: Value,
    include_usage: bool,
    workers_ai: bool,
    omit_done: bool,
    omit_finish: bool,
    hold_open: bool,
    delay: Duration,
}

impl Answer {
    /// Builds the answer to chat request `req` (the parsed body), shaped by `script`.
    pub(crate) fn new(req: &Value, script: Option<&Script>, default_delay: Duration) -> Answer {
        let default_script = Script::default();
        let s = script.unwrap_or(&default_script);
        let requested = req
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let model = if s.workers_ai_style {
            let bare = if requested.to_ascii_lowercase().starts_with("workers-ai/") {
                &requested["workers-ai/".len()..]
            } else {
                requested.as_str()
            };
            format!("{bare}-external")
        } else {
            requested
        };
        let tool_calls = s
            .tool_calls
            .clone()
            .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()));
        let mut content = match (&s.content, &s.chunks) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(chunks)) => Some(chunks.concat()),
            (None, None) if tool_calls.is_some() => None,
            (None, None) => Some(echo(req)),
        };
        let mut pieces = match (&s.chunks, &content) {
            (Some(chunks), _) => chunks.clone(),
            (None, Some(c)) => split_pieces(c),
            (None, None) => Vec::new(),
        };
        let mut finish_reason = s.finish_reason.clone().unwrap_or_else(|| {
            if tool_calls.is_some() {
                "tool_calls".to_string()
            } else {
                "stop".to_string()
            }
        });
        cut_at_stop(req, &mut pieces, &mut content);
        let max_tokens = req
            .get("max_completion_tokens")
            .and_then(Value::as_u64)
            .or_else(|| req.get("max_tokens").and_then(Value::as_u64));
        let limit = max_tokens
            .and_then(|m| usize::try_from(m).ok())
            .filter(|&m| m < pieces.len());
        if let Some(max) = limit {
            pieces.truncate(max);
            content = Some(pieces.concat());
            if s.finish_reason.is_none() {
                finish_reason = "length".to_string();
            }
        }
        let usage = s.usage.clone().unwrap_or_else(|| {
            let prompt = prompt_tokens(req);
            let completion = pieces.len() as u64;
            json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0},
            })
        });
        let include_usage = req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        Answer {
            id: format!("chatcmpl-{:016x}{:08x}", rand64(), rand64() as u32),
            created: unix_seconds(),
            model,
            reasoning: s.reasoning.clone().unwrap_or_default(),
            pieces,
            content,
            tool_calls,
            finish_reason,
            usage,
            include_usage,
            workers_ai: s.workers_ai_style,
            omit_done: s.omit_done,
            omit_finish: s.omit_finish,
            hold_open: s.hold_open,
            delay: s
                .chunk_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(default_delay),
        }
    }

    /// The non-streamed `chat.completion` JSON (section 8.7).
    pub(crate) fn completion_json(&self) -> String {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(self.content));
        if let Some(tc) = &self.tool_calls {
            message.insert("tool_calls".into(), tc.clone());
        }
        if !self.reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(self.reasoning.concat()));
        }
        let mut choice = json!({
            "index": 0,
            "message": message,
            "finish_reason": self.finish_reason,
        });
        if self.workers_ai {
            choice["logprobs"] = Value::Null;
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage,
        })
        .to_string()
    }

    fn chunk(&self, delta: Option<Value>, finish: Option<&str>, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        });
        match delta {
            Some(mut delta) => {
                let mut choice = json!({"index": 0, "delta": {}, "finish_reason": finish});
                if self.workers_ai {
                    if delta.get("reasoning_content").is_none() && finish.is_none() {
                        delta["reasoning_content"] = Value::Null;
                    }
                    choice["logprobs"] = Value::Null;
                    choice["matched_stop"] = Value::Null;
                }
                choice["delta"] = delta;
                chunk["choices"] = json!([choice]);
            }
            None => chunk["choices"] = json!([]),
        }
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        if self.workers_ai {
            chunk["p"] = json!(alnum(1 + (rand64() % 40) as usize));
        }
        chunk
    }

    fn frame(&self, value: &Value) -> Step {
        let eol = if self.workers_ai { "\r\n" } else { "\n" };
        Step::Data(Bytes::from(format!("data: {value}{eol}{eol}")))
    }

    /// The deltas of the "pieces" (reasoning, content, tool calls), in stream order.
    fn piece_deltas(&self) -> Vec<Value> {
        let mut deltas: Vec<Value> = Vec::new();
        for r in &self.reasoning {
            deltas.push(json!({"reasoning_content": r}));
        }
        for p in &self.pieces {
            deltas.push(json!({"content": p}));
        }
        if let Some(calls) = self.tool_calls.as_ref().and_then(Value::as_array) {
            for (index, call) in calls.iter().enumerate() {
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| alnum(9));
                let function = call.get("function").cloned().unwrap_or(Value::Null);
                let name = function.get("name").cloned().unwrap_or(json!(""));
                let arguments = match function.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                let kind = call.get("type").cloned().unwrap_or(json!("function"));
                deltas.push(json!({"tool_calls": [{
                    "index": index, "id": id, "type": kind,
                    "function": {"name": name, "arguments": ""},
                }]}));
                for part in split_three(&arguments) {
                    deltas.push(json!({"tool_calls": [{
                        "index": index, "function": {"arguments": part},
                    }]}));
                }
            }
            // The Workers AI null finalisation delta, faithfully without `index`
            // (section 4; CFAI workers-ai-provider streaming.ts "Chunk D").
            deltas.push(json!({"tool_calls": [{
                "id": null, "type": null, "function": {"name": null},
            }]}));
        }
        if deltas.is_empty() {
            deltas.push(json!({"content": ""}));
        }
        if let Some(first) = deltas.first_mut() {
            let mut with_role = Map::new();
            with_role.insert("role".into(), json!("assistant"));
            if let Some(obj) = first.as_object() {
                with_role.extend(obj.clone());
            }
            *first = Value::Object(with_role);
        }
        deltas
    }

    /// Per-chunk incremental usage for the Workers AI style: the prompt tokens on the first
    /// chunk, the completion tokens spread one per chunk (remainder on the last), so the
    /// increments sum exactly to the cumulative usage.
    fn incremental_usage(&self, count: usize) -> Vec<Value> {
        let prompt = self.usage["prompt_tokens"].as_u64().unwrap_or(0);
        let completion = self.usage["completion_tokens"].as_u64().unwrap_or(0);
        let mut given = 0u64;
        (0..count)
            .map(|i| {
                let c = if i + 1 == count {
                    completion - given
                } else if given < completion {
                    1
                } else {
                    0
                };
                given += c;
                let p = if i == 0 { prompt } else { 0 };
                json!({
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "total_tokens": p + c,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "neurons": (p + c) as f64 * 0.015,
                })
            })
            .collect()
    }

    /// The SSE body plan (section 4).
    pub(crate) fn stream_plan(&self) -> Vec<Step> {
        let deltas = self.piece_deltas();
        let mut incremental = if self.workers_ai {
            // One increment per piece chunk plus one for the finish chunk.
            self.incremental_usage(deltas.len() + usize::from(!self.omit_finish))
        } else {
            Vec::new()
        }
        .into_iter();
        let mut steps = Vec::new();
        for (i, delta) in deltas.into_iter().enumerate() {
            if i > 0 && !self.delay.is_zero() {
                steps.push(Step::Delay(self.delay));
            }
            let chunk = self.chunk(Some(delta), None, incremental.next());
            steps.push(self.frame(&chunk));
        }
        if self.hold_open {
            steps.push(Step::Hang);
            return steps;
        }
        if !self.omit_finish {
            let chunk = self.chunk(
                Some(json!({})),
                Some(&self.finish_reason),
                incremental.next(),
            );
            steps.push(self.frame(&chunk));
        }
        if self.workers_ai || self.include_usage {
            let chunk = self.chunk(None, None, Some(self.usage.clone()));
            steps.push(self.frame(&chunk));
        }
        if self.workers_ai {
            // The native Workers AI trailer: no `choices`, no padding.
            let trailer = json!({"response": "", "usage": self.usage});
            steps.push(self.frame(&trailer));
        }
        if !self.omit_done {
            let eol = if self.workers_ai { "\r\n" } else { "\n" };
            steps.push(Step::Data(Bytes::from(format!("data: [DONE]{eol}{eol}"))));
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_to_the_text() {
        for text in [
            "echo: hello world",
            "  leading and trailing  ",
            "one",
            "",
            "a\n\nb\tc",
            "héllo wörld ✓",
        ] {
            let pieces = split_pieces(text);
            assert_eq!(pieces.concat(), text);
            assert_eq!(
                pieces.len(),
                text.split_whitespace()
                    .count()
                    .max(usize::from(!text.is_empty()))
            );
        }
        assert_eq!(split_pieces("echo: hi there"), ["echo: ", "hi ", "there"]);
    }

    #[test]
    fn echo_reads_the_last_user_message() {
        let req = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "image_url"}, {"type": "text", "text": "b"}]},
        ]});
        assert_eq!(echo(&req), "echo: a b");
        assert_eq!(prompt_tokens(&req), 4);
    }

    #[test]
    fn split_three_parts() {
        assert_eq!(split_three("{\"a\":1}").concat(), "{\"a\":1}");
        assert_eq!(split_three("{\"a\":1}").len(), 3);
        assert!(split_three("").is_empty());
        assert_eq!(split_three("ab"), ["a", "b"]);
    }

    #[test]
    fn incremental_usage_sums_to_cumulative() {
        let req = json!({"model": "workers-ai/@cf/x", "messages": [{"role": "user", "content": "one two three"}]});
        let script = Script {
            workers_ai_style: true,
            ..Script::default()
        };
        let a = Answer::new(&req, Some(&script), Duration::ZERO);
        let inc = a.incremental_usage(7);
        let p: u64 = inc
            .iter()
            .map(|u| u["prompt_tokens"].as_u64().unwrap())
            .sum();
        let c: u64 = inc
            .iter()
            .map(|u| u["completion_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(p, a.usage["prompt_tokens"].as_u64().unwrap());
        assert_eq!(c, a.usage["completion_tokens"].as_u64().unwrap());
        assert_eq!(a.model, "@cf/x-external");
    }
}
