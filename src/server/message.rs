//! A frame's body, parsed once into the message types tower-lsp-server takes.
//!
//! tower-lsp-server's own codec would end the connection at the first body it cannot
//! decode, so the connection never hands it bytes: each body is deserialized here, in one
//! pass and without an intermediate `Value` of the whole message, straight into the
//! [`Request`] its service is called with or the [`Response`] its client socket takes.
//! A body that is not a JSON-RPC message is answered with the error it deserves (-32700
//! when it is not JSON, -32600 when it is JSON but no JSON-RPC message), and only on
//! that rare path is it read a second time, loosely, to find the id to answer and say
//! what is wrong.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::error::Category;
use tower_lsp_server::jsonrpc::{self, Id, Request, Response};

/// What one frame's body holds.
#[derive(Debug)]
pub enum Message {
    /// A request or a notification from the client.
    Request(Request),
    /// The client's answer to a request of ours (`workspace/applyEdit`, ...).
    Response(Response),
    /// Not a message we can take; answered with this error.
    Invalid { id: Id, code: i64, message: String },
}

/// Every member a JSON-RPC 2.0 message may have; which are present says what it is.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    #[serde(default, deserialize_with = "present")]
    method: Option<String>,
    /// Absent and `null` differ for params (`null` is passed on as given) and ids (`null`
    /// is a request, absent a notification), so both keep `Some(Null)` apart from `None`.
    #[serde(default, deserialize_with = "present")]
    params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default)]
    error: Option<jsonrpc::Error>,
}

fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Reads one frame's body.
pub fn parse(body: &Bytes) -> Message {
    // A struct also deserializes from an array of its fields: only an object is tried.
    let object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !object {
        return diagnose(body, None);
    }
    let wire: Wire = match serde_json::from_slice(body) {
        Ok(wire) => wire,
        Err(e) if e.classify() == Category::Data => return diagnose(body, Some(e)),
        Err(e) => return parse_error(&e),
    };
    let reply_id = wire.id.clone().unwrap_or(Id::Null);
    if wire.jsonrpc != "2.0" {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    let Some(method) = wire.method else {
        return match (wire.result, wire.error) {
            (Some(result), _) => Message::Response(Response::from_ok(reply_id, result)),
            (None, Some(error)) => Message::Response(Response::from_error(reply_id, error)),
            (None, None) => invalid(reply_id, "no \"method\" (and not a response)"),
        };
    };
    let params = match wire.params {
        None | Some(Value::Null) if method.starts_with("cfgate/") => {
            // cfgate's methods take params that may all be left out; tower wants them present.
            Some(Value::Object(Default::default()))
        }
        None | Some(Value::Null | Value::Object(_) | Value::Array(_)) => wire.params,
        Some(_) => return invalid(reply_id, "\"params\" must be an object or an array"),
    };
    let mut request = Request::build(method);
    if let Some(params) = params {
        request = request.params(params);
    }
    if let Some(id) = wire.id {
        request = request.id(id);
    }
    Message::Request(request.finish())
}

fn parse_error(e: &serde_json::Error) -> Message {
    Message::Invalid {
        id: Id::Null,
        code: -32700,
        message: format!("Parse error: {e}"),
    }
}

fn invalid(id: Id, message: &str) -> Message {
    Message::Invalid {
        id,
        code: -32600,
        message: format!("Invalid request: {message}"),
    }
}

/// A body that did not deserialize as a message: says why, answering the request's id
/// when it has a usable one.
fn diagnose(body: &Bytes, failed: Option<serde_json::Error>) -> Message {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return parse_error(&e),
    };
    let Value::Object(obj) = value else {
        let what = if value.is_array() {
            "batches are not supported; send one message per frame"
        } else {
            "a message must be a JSON object"
        };
        return invalid(Id::Null, what);
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => Some(Id::Null),
        Some(Value::String(s)) => Some(Id::String(s.clone())),
        Some(Value::Number(n)) => n.as_i64().map(Id::Number),
        Some(_) => None,
    };
    let reply_id = id.clone().unwrap_or(Id::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    if id.is_none() {
        return invalid(Id::Null, "\"id\" must be an integer, a string or null");
    }
    match obj.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return invalid(reply_id, "\"method\" must be a string"),
        None if obj.contains_key("error") && !obj.contains_key("result") => {
            return invalid(
                reply_id,
                "\"error\" must be {code: integer, message: string, data?}",
            );
        }
        None => {}
    }
    let why = failed.map_or_else(|| "not a JSON-RPC message".to_string(), |e| e.to_string());
    invalid(reply_id, &why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: &str) -> Message {
        parse(&Bytes::from(body.to_string()))
    }

    fn code_of(body: &str) -> Option<i64> {
        match read(body) {
            Message::Invalid { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(code_of("{"), Some(-32700));
        assert_eq!(code_of("{\"jsonrpc\":\"2.0\"} x"), Some(-32700));
        assert_eq!(code_of("[1]"), Some(-32600));
        assert_eq!(code_of(r#"["2.0","x",null,1,null,null]"#), Some(-32600));
        assert_eq!(code_of("42"), Some(-32600));
        assert_eq!(code_of("{}"), Some(-32600));
        assert_eq!(
            code_of(r#"{"jsonrpc":"1.0","method":"x","id":1}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","id":1.5}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","id":{}}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":7,"id":1}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","method":"x","params":3,"id":1}"#),
            Some(-32600)
        );
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1}"#), Some(-32600));
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#),
            Some(-32600)
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","x":0}}"#),
            Some(-32600)
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(code_of(&deep), Some(-32700));
    }

    #[test]
    fn answers_the_id_of_a_message_it_refuses_when_it_can() {
        for body in [
            r#"{"jsonrpc":"1.0","method":"x","id":7}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":3,"id":7}"#,
            r#"{"jsonrpc":"2.0","method":7,"id":7}"#,
            r#"{"jsonrpc":"2.0","id":7}"#,
        ] {
            match read(body) {
                Message::Invalid { id, .. } => assert_eq!(id, Id::Number(7), "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_requests_notifications_and_responses() {
        match read(r#"{"jsonrpc":"2.0","method":"x","id":"a","params":{"k":[1]}}"#) {
            Message::Request(r) => {
                assert_eq!(r.method(), "x");
                assert_eq!(r.id(), Some(&Id::String("a".into())));
                assert_eq!(r.params(), Some(&json!({"k": [1]})));
            }
            other => panic!("{other:?}"),
        }
        match read(r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#) {
            Message::Request(r) => assert_eq!(r.id(), None),
            other => panic!("{other:?}"),
        }
        match read(r#"{"jsonrpc":"2.0","method":"x","id":null}"#) {
            Message::Request(r) => {
                assert_eq!(r.id(), Some(&Id::Null));
                assert_eq!(r.params(), None);
            }
            other => panic!("{other:?}"),
        }
        match read(r#"{"jsonrpc":"2.0","id":3,"result":null}"#) {
            Message::Response(r) => {
                assert_eq!(r.id(), &Id::Number(3));
                assert_eq!(r.result(), Some(&Value::Null));
            }
            other => panic!("{other:?}"),
        }
        match read(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#) {
            Message::Response(r) => assert_eq!(r.error().map(|e| e.code.code()), Some(-1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fills_in_absent_params_of_cfgate_methods() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"cfgate/status","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"cfgate/status","id":1,"params":null}"#,
        ] {
            match read(body) {
                Message::Request(r) => assert_eq!(r.params(), Some(&json!({})), "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        match read(r#"{"jsonrpc":"2.0","method":"shutdown","id":1}"#) {
            Message::Request(r) => assert_eq!(r.params(), None),
            other => panic!("{other:?}"),
        }
    }
}
