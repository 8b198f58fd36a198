//! The stream reader must not care where the network cuts the gateway's bytes: the same
//! SSE byte stream, split at every point, gives the same pieces and the same answer.

use bytes::Bytes;
use proptest::prelude::*;

use super::pieces_from_chunks;

fn read(chunks: Vec<Bytes>) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    format!("{:?}", runtime.block_on(pieces_from_chunks(chunks)))
}

/// An SSE stream as the gateway sends it: OpenAI chunks (or Workers AI's native form),
/// LF or CRLF line ends, comments, and `[DONE]`.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = "[a-zé€😀 \\\\\"\n]{0,6}";
    (
        proptest::collection::vec(piece, 1..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(pieces, crlf, native, comment)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut out = String::new();
            if comment {
                out.push_str(&format!(": keep-alive{nl}{nl}"));
            }
            for p in &pieces {
                let text = serde_json::to_string(p).unwrap();
                let data = if native {
                    format!("{{\"response\":{text}}}")
                } else {
                    format!("{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{text}}}}}]}}")
                };
                out.push_str(&format!("data: {data}{nl}{nl}"));
            }
            out.push_str(&format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}{nl}{nl}data: [DONE]{nl}{nl}"
            ));
            out.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn a_stream_split_at_every_point_reads_the_same(bytes in stream()) {
        let whole = read(vec![Bytes::from(bytes.clone())]);
        prop_assert!(whole.starts_with("Ok("), "{}", whole);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let split = read(vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]);
            prop_assert_eq!(&whole, &split, "split at byte {}", at);
        }
        let singles = bytes.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
        prop_assert_eq!(&whole, &read(singles), "one byte per read");
    }
}
