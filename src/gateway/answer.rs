//! Folds what the gateway sends, chunk by chunk, into pieces and one whole answer.
//!
//! This is pure (no I/O) so that every quirk of the real stream (wire notes, section 4) is
//! a unit test: chunks without `choices`, usage on every chunk and again at the end,
//! Workers AI's native `{"response": ...}` form, `reasoning` vs `reasoning_content`, tool
//! calls split over deltas and closed by a null "finalisation" delta, `model_length`.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind};
use crate::protocol::{Piece, Usage};

/// The most tool calls one answer may hold. Calls are merged by the `index` the upstream
/// sends, so without a bound one index of `10**12` would make the fold allocate that many.
/// No model asks for more than a few dozen calls at once.
pub const MAX_TOOL_CALLS: usize = 256;

/// The answer as accumulated so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub content: String,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<Map<String, Value>>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// `data: [DONE]` arrived.
    pub done: bool,
}

impl Answer {
    /// A stream is complete when it said so; anything else was cut off.
    pub fn is_complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    /// Feeds one SSE `data` payload of a streamed answer; returns the pieces it carried.
    pub fn feed_event(&mut self, data: &str) -> Result<Vec<Piece>, Error> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(vec![]);
        }
        if data.is_empty() {
            return Ok(vec![]);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            let shown: String = data.chars().take(200).collect();
            Error::new(
                ErrorKind::BadResponse,
                format!("the gateway sent a stream event that is not JSON ({e}): {shown}"),
            )
        })?;
        self.feed_chunk(&chunk)
    }

    /// Feeds one parsed `chat.completion.chunk` (or a native Workers AI chunk).
    pub fn feed_chunk(&mut self, chunk: &Value) -> Result<Vec<Piece>, Error> {
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let body = serde_json::json!({ "error": err }).to_string();
            let mut e = super::upstream_error::from_response(200, &body, "");
            e.message = format!("the stream carried an error: {}", e.message);
            return Err(e);
        }
        if let Some(usage) = chunk.get("usage").and_then(parse_usage) {
            // Workers AI repeats usage per chunk and then cumulatively: the last one is the total.
            self.usage = Some(usage);
        }
        let mut pieces = Vec::new();
        match chunk.get("choices").and_then(Value::as_array) {
            Some(choices) => {
                for choice in choices.iter().filter(|c| index_of(c) == 0) {
                    if let Some(delta) = choice.get("delta") {
                        self.feed_delta(delta, &mut pieces)?;
                    }
                    self.set_finish(choice.get("finish_reason"));
                }
            }
            // Native Workers AI form: `{"response": "tok"}`, and `{"response": "", usage}` last.
            None => {
                if let Some(text) = chunk.get("response").and_then(Value::as_str) {
                    self.push_content(text, &mut pieces);
                }
                if let Some(calls) = chunk.get("tool_calls").and_then(Value::as_array) {
                    self.feed_tool_deltas(calls, &mut pieces)?;
                }
            }
        }
        Ok(pieces)
    }

    fn feed_delta(&mut self, delta: &Value, pieces: &mut Vec<Piece>) -> Result<(), Error> {
        let reasoning = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| delta.get(*k).and_then(Value::as_str))
            .filter(|r| !r.is_empty());
        if let Some(text) = reasoning {
            self.reasoning
                .get_or_insert_with(String::new)
                .push_str(text);
            pieces.push(Piece::Reasoning(text.to_string()));
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.push_content(text, pieces);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            self.feed_tool_deltas(calls, pieces)?;
        }
        Ok(())
    }

    fn push_content(&mut self, text: &str, pieces: &mut Vec<Piece>) {
        if !text.is_empty() {
            self.content.push_str(text);
            pieces.push(Piece::Content(text.to_string()));
        }
    }

    fn set_finish(&mut self, reason: Option<&Value>) {
        if let Some(reason) = reason.and_then(Value::as_str).filter(|r| !r.is_empty()) {
            self.finish_reason = Some(normalize_finish(reason));
        }
    }

    /// Merges tool-call deltas by `index`: the first delta of a call brings id and name,
    /// later ones append to `arguments`, and a delta whose fields are all null adds nothing.
    /// An `index` that is not a whole number below [`MAX_TOOL_CALLS`] makes the answer
    /// malformed; a missing one means the last call.
    fn feed_tool_deltas(&mut self, deltas: &[Value], pieces: &mut Vec<Piece>) -> Result<(), Error> {
        let mut shown = Vec::new();
        for delta in deltas {
            let index = match delta.get("index") {
                None | Some(Value::Null) => self.tool_calls.len().saturating_sub(1),
                Some(index) => match index.as_u64() {
                    Some(i) if i < MAX_TOOL_CALLS as u64 => i as usize,
                    _ => return Err(bad_tool_call_index(index)),
                },
            };
            let function = delta.get("function");
            let id = delta.get("id").and_then(Value::as_str);
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(|a| match a {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .filter(|a| !a.is_empty());
            if id.is_none() && name.is_none() && arguments.is_none() {
                continue;
            }
            while self.tool_calls.len() <= index {
                let mut call = Map::new();
                call.insert("type".into(), Value::from("function"));
                call.insert(
                    "function".into(),
                    serde_json::json!({"name": "", "arguments": ""}),
                );
                self.tool_calls.push(call);
            }
            let call = &mut self.tool_calls[index];
            if let Some(id) = id.filter(|i| !i.is_empty()) {
                call.insert("id".into(), Value::from(id));
            }
            if let Some(Value::Object(f)) = call.get_mut("function") {
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    f.insert("name".into(), Value::from(name));
                }
                if let Some(args) = &arguments {
                    let joined = f
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                        + args;
                    f.insert("arguments".into(), Value::from(joined));
                }
            }
            shown.push(delta.clone());
        }
        if !shown.is_empty() {
            pieces.push(Piece::ToolCalls(shown));
        }
        Ok(())
    }

    /// Reads a whole (non-streamed) `chat.completion`.
    pub fn from_completion(json: &Value) -> Result<Answer, Error> {
        if let Some(err) = json.get("error").filter(|e| !e.is_null()) {
            let body = serde_json::json!({ "error": err }).to_string();
            return Err(super::upstream_error::from_response(200, &body, ""));
        }
        let mut answer = Answer {
            usage: json.get("usage").and_then(parse_usage),
            done: true,
            ..Answer::default()
        };
        let choice = json
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| index_of(c) == 0));
        let Some(choice) = choice else {
            // Workers AI native `{"result": {"response": ...}}` or `{"response": ...}`.
            let native = json.get("result").unwrap_or(json);
            if let Some(text) = native.get("response").and_then(Value::as_str) {
                answer.content = text.to_string();
                answer.finish_reason = Some("stop".into());
                if answer.usage.is_none() {
                    answer.usage = native.get("usage").and_then(parse_usage);
                }
                return Ok(answer);
            }
            let shown: String = json.to_string().chars().take(200).collect();
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!("the gateway's answer has no choices: {shown}"),
            ));
        };
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let mut pieces = Vec::new();
        answer.feed_delta(&message, &mut pieces)?;
        // A whole message's tool calls have no `index`: number them in order.
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            if calls.len() > MAX_TOOL_CALLS {
                return Err(bad_tool_call_index(&Value::from(calls.len() - 1)));
            }
            answer.tool_calls.clear();
            let indexed: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut c = c.clone();
                    if let Some(obj) = c.as_object_mut() {
                        obj.insert("index".into(), Value::from(i));
                    }
                    c
                })
                .collect();
            answer.feed_tool_deltas(&indexed, &mut pieces)?;
        }
        answer.set_finish(choice.get("finish_reason"));
        Ok(answer)
    }

    /// The tool calls as OpenAI message objects, or `None` when there were none.
    pub fn tool_calls_value(&self) -> Option<Vec<Value>> {
        (!self.tool_calls.is_empty()).then(|| {
            self.tool_calls
                .iter()
                .map(|c| Value::Object(c.clone()))
                .collect()
        })
    }
}

fn bad_tool_call_index(index: &Value) -> Error {
    let shown: String = index.to_string().chars().take(40).collect();
    Error::new(
        ErrorKind::BadResponse,
        format!(
            "the gateway's answer is malformed: tool call index {shown} (cfgate takes whole numbers from 0 to {})",
            MAX_TOOL_CALLS - 1
        ),
    )
    .with_hint("the upstream sent a broken tool call; try again, or another model")
}

fn index_of(choice: &Value) -> u64 {
    choice.get("index").and_then(Value::as_u64).unwrap_or(0)
}

fn normalize_finish(reason: &str) -> String {
    match reason {
        "model_length" => "length".to_string(),
        other => other.to_string(),
    }
}

fn parse_usage(value: &Value) -> Option<Usage> {
    let n = |k: &str| value.get(k).and_then(Value::as_u64);
    let prompt = n("prompt_tokens");
    let completion = n("completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: n("total_tokens").unwrap_or(prompt + completion),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed_all(events: &[&str]) -> (Answer, Vec<Piece>) {
        let mut a = Answer::default();
        let mut pieces = Vec::new();
        for e in events {
            pieces.extend(a.feed_event(e).unwrap());
        }
        (a, pieces)
    }

    #[test]
    fn openai_stream_with_usage_chunk() {
        let (a, pieces) = feed_all(&[
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "[DONE]",
        ]);
        assert_eq!(a.content, "Hello");
        assert_eq!(
            pieces,
            vec![Piece::Content("Hel".into()), Piece::Content("lo".into())]
        );
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.usage.unwrap().total_tokens, 5);
        assert!(a.is_complete());
    }

    #[test]
    fn workers_ai_quirks_count_usage_once() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"A","reasoning_content":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8},"p":"abcdef"}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"B"},"finish_reason":"model_length"}],"usage":{"prompt_tokens":0,"completion_tokens":1,"total_tokens":1},"p":"x"}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
            r#"{"response":"","usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
            "[DONE]",
        ]);
        assert_eq!(a.content, "AB");
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            a.usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 2,
                total_tokens: 9
            })
        );
    }

    #[test]
    fn native_workers_ai_stream() {
        let (a, pieces) = feed_all(&[
            r#"{"response":"Hi","p":"zz"}"#,
            r#"{"response":" there"}"#,
            "[DONE]",
        ]);
        assert_eq!(a.content, "Hi there");
        assert_eq!(pieces.len(), 2);
    }

    #[test]
    fn reasoning_in_both_spellings() {
        let (a, pieces) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":"more"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#,
        ]);
        assert_eq!(a.reasoning.as_deref(), Some("think more"));
        assert_eq!(pieces[0], Piece::Reasoning("think ".into()));
        assert!(a.is_complete());
    }

    #[test]
    fn tool_calls_split_then_null_finalisation() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":null,"type":null,"function":{"name":null}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]);
        let calls = a.tool_calls_value().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["id"], "call1");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    }

    #[test]
    fn whole_tool_call_in_one_delta_after_text() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"Let me check."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c9","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"index":1,"id":"c10","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ]);
        let calls = a.tool_calls_value().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["function"]["name"], "g");
        assert_eq!(a.content, "Let me check.");
    }

    #[test]
    fn a_tool_call_index_past_the_bound_negative_or_fractional_is_malformed() {
        for index in ["1000000000000", "-1", "1.5", "\"0\"", "256"] {
            let event = format!(
                r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"id":"c","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#
            );
            let mut answer = Answer::default();
            let err = answer.feed_event(&event).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadResponse, "{index}");
            assert!(err.message.contains("tool call index"), "{}", err.message);
            assert!(answer.tool_calls.is_empty(), "{index}");
        }
        let last = MAX_TOOL_CALLS - 1;
        let (a, _) = feed_all(&[&format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{last},"id":"c","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#
        )]);
        assert_eq!(a.tool_calls.len(), MAX_TOOL_CALLS);
        let many: Vec<Value> = (0..=MAX_TOOL_CALLS)
            .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
            .collect();
        let whole = json!({"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":many},"finish_reason":"tool_calls"}]});
        assert_eq!(
            Answer::from_completion(&whole).unwrap_err().kind,
            ErrorKind::BadResponse
        );
    }

    #[test]
    fn cut_stream_is_incomplete_and_bad_json_is_an_error() {
        let (a, _) = feed_all(&[r#"{"choices":[{"index":0,"delta":{"content":"par"}}]}"#]);
        assert!(!a.is_complete());
        let err = Answer::default().feed_event("{not json").unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadResponse);
    }

    #[test]
    fn error_inside_a_stream() {
        let err = Answer::default()
            .feed_event(
                r#"{"error":{"message":"context too long","code":"context_length_exceeded"}}"#,
            )
            .unwrap_err();
        assert!(err.message.contains("context too long"), "{}", err.message);
    }

    #[test]
    fn whole_completion() {
        let json = json!({"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}});
        let a = Answer::from_completion(&json).unwrap();
        assert_eq!(a.content, "Hi");
        assert_eq!(a.tool_calls_value().unwrap()[0]["id"], "t1");
        assert_eq!(a.usage.unwrap().total_tokens, 3);
        assert!(Answer::from_completion(&json!({"object":"x"})).is_err());
    }

    // One test per Workers AI stream quirk of wire notes section 4 (docs/gateway.md).

    #[test]
    fn quirk_padding_field_p_is_ignored() {
        let (a, pieces) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"p":"QWERTYuiop1234567890"}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"p":"z"}"#,
        ]);
        assert_eq!(a.content, "x");
        assert_eq!(pieces, vec![Piece::Content("x".into())]);
    }

    #[test]
    fn quirk_incremental_usage_then_cumulative_is_counted_once() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"b"}}],"usage":{"prompt_tokens":0,"completion_tokens":1,"total_tokens":1}}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":0,"completion_tokens":1,"total_tokens":1}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
            "[DONE]",
        ]);
        // Neither the sum of the increments plus the total (16) nor the last increment.
        assert_eq!(a.usage.unwrap().total_tokens, 8);
        assert_eq!(a.usage.unwrap().completion_tokens, 3);
    }

    #[test]
    fn quirk_native_response_trailer_adds_no_text_and_carries_usage() {
        let (a, pieces) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"done"},"finish_reason":"stop"}]}"#,
            r#"{"response":"","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
            "[DONE]",
        ]);
        assert_eq!(a.content, "done");
        assert_eq!(pieces.len(), 1);
        assert_eq!(a.usage.unwrap().total_tokens, 2);
    }

    #[test]
    fn quirk_reasoning_and_reasoning_content_both_read_and_null_ignored() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"","reasoning_content":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":"r1 "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"r2"}}]}"#,
        ]);
        assert_eq!(a.reasoning.as_deref(), Some("r1 r2"));
        assert_eq!(a.content, "");
    }

    #[test]
    fn quirk_model_length_finish_reason_is_length() {
        let (a, _) = feed_all(&[
            r#"{"choices":[{"index":0,"delta":{"content":"cut"},"finish_reason":"model_length"}]}"#,
        ]);
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert!(a.is_complete());
    }

    #[test]
    fn quirk_external_model_suffix_does_not_disturb_the_fold() {
        let (a, _) = feed_all(&[
            r#"{"id":"x","model":"@cf/google/gemma-4-26b-a4b-it-external","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#,
        ]);
        assert_eq!(a.content, "ok");
    }
}
