//! The plans of [`Hostile`] answers: shapes a client must survive without growing or
//! hanging (cfgate's issue 13). The endless ones are one frame repeated, so the fake
//! itself holds only that frame however long the client reads.

use bytes::Bytes;
use serde_json::json;

use crate::Hostile;
use crate::answer::Step;

fn event(value: serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn content(text: &str) -> Bytes {
    event(json!({"object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}))
}

pub(crate) fn plan(hostile: &Hostile) -> Vec<Step> {
    let opening = Step::Data(content(Hostile::OPENING));
    match hostile {
        Hostile::ToolCallIndex(index) => vec![
            opening,
            Step::Data(event(
                json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
                "delta": {"tool_calls": [{"index": index, "id": "call_h", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": null}]}),
            )),
            Step::Data(event(json!({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))),
            Step::Data(Bytes::from_static(b"data: [DONE]\n\n")),
        ],
        Hostile::EndlessStream(piece) => {
            vec![opening, Step::Repeat(content(&"x".repeat((*piece).max(1))))]
        }
        Hostile::EndlessTinyEvents => {
            // Many events per frame, so the fake is not the slow side.
            let tiny = "data:{\"response\":\"x\"}\n\n".repeat(2048);
            vec![opening, Step::Repeat(Bytes::from(tiny))]
        }
        Hostile::EndlessLine => vec![
            opening,
            Step::Data(Bytes::from_static(
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
            )),
            Step::Repeat(Bytes::from(vec![b'x'; 64 * 1024])),
        ],
    }
}
