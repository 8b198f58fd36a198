//! The stream reader turns the gateway's bytes into pieces: whatever it is sent, it must not
//! panic, and the same bytes cut into different reads must give the same pieces.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn read(chunks: Vec<Bytes>) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Errors are compared by presence only: their text may name the offending event.
    runtime
        .block_on(cfgate::gateway::pieces_from_chunks(chunks))
        .ok()
        .map(|result| format!("{result:?}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, input)) = data.split_first() else {
        return;
    };
    let whole = read(vec![Bytes::copy_from_slice(input)]);
    // Cut into reads of varying length, some empty.
    let step = (cuts as usize % 17) + 1;
    let chunks: Vec<Bytes> = input
        .chunks(step)
        .map(Bytes::copy_from_slice)
        .flat_map(|c| [Bytes::new(), c])
        .collect();
    let split = read(chunks);
    assert_eq!(whole, split, "reads of {step} bytes changed the result");
});
