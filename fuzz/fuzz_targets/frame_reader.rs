//! The frame reader is the first thing a client's bytes meet: whatever they are, it must not
//! panic, must end, must never hand on a body over the cap, and must read the same items
//! however the input is cut into reads.
#![no_main]

use bytes::Bytes;
use cfgate::server::framing::{FrameReader, Incoming};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;

const MAX_FRAME: usize = 4096;

fn read_all(first: &[u8], second: &[u8]) -> Vec<Incoming> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let input =
            std::io::Cursor::new(first.to_vec()).chain(std::io::Cursor::new(second.to_vec()));
        let mut reader = FrameReader::new(input, MAX_FRAME);
        let mut items = Vec::new();
        // Each item consumes input, so there are never more items than bytes (plus the end).
        while let Some(item) = reader
            .next()
            .await
            .expect("reading from memory cannot fail")
        {
            items.push(item);
            assert!(
                items.len() <= first.len() + second.len() + 1,
                "reader does not advance"
            );
        }
        items
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let whole = read_all(input, &[]);
    for item in &whole {
        if let Incoming::Frame(body) = item {
            assert!(body.len() <= MAX_FRAME);
        }
    }
    let cut = (cut as usize * input.len()) / 255;
    let (a, b) = input.split_at(cut.min(input.len()));
    let split = read_all(a, b);
    let frames = |items: &[Incoming]| -> Vec<Bytes> {
        items
            .iter()
            .filter_map(|i| match i {
                Incoming::Frame(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        frames(&whole),
        frames(&split),
        "a cut at {cut} changed the frames"
    );
});
