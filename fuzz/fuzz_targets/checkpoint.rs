//! The checkpoint loaders on arbitrary text: the core's `lcam-state/1` (`LcamState` JSON, f32
//! and f64, restored with `Lcam::from_state`), and `lcam train`'s `progress.json` (parsed,
//! checked, and verified as a checkpoint directory against its file list) and `config.json`.
//! Nothing panics; an accepted state restores to an optimizer whose state is the input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use lcam_cli::train::args::RunConfig;
use lcam_cli::train::checkpoint::{Progress, check_progress, verify_checkpoint};
use lcam_core::ndarray::{ArrayD, IxDyn};
use lcam_core::{Lcam, LcamState, Scalar};
use libfuzzer_sys::fuzz_target;

/// Buffers with more elements than this are not restored (time per input).
const MAX_ELEMENTS: usize = 1 << 16;

fn state<F: Scalar + serde::de::DeserializeOwned>(text: &str) {
    let Ok(state) = serde_json::from_str::<LcamState<F>>(text) else {
        return;
    };
    let elements: usize = state.buffers.iter().flatten().map(|b| b.data.len()).sum();
    if elements > MAX_ELEMENTS {
        return;
    }
    // Parameters shaped like the buffers that are consistent, one element otherwise.
    let params: Vec<ArrayD<F>> = state
        .buffers
        .iter()
        .map(|b| {
            b.as_ref()
                .and_then(|b| b.to_array("fuzz").ok())
                .unwrap_or_else(|| ArrayD::zeros(IxDyn(&[1])))
        })
        .collect();
    if let Ok(opt) = Lcam::from_state(&state, &params) {
        assert_eq!(opt.state(), state, "restore → save is the identity");
    }
}

/// A checkpoint directory with one file, `model.bin`, for `verify_checkpoint`.
fn checkpoint_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lcam-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz checkpoint dir");
        std::fs::write(dir.join("model.bin"), b"model").expect("model file");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    state::<f32>(text);
    state::<f64>(text);
    if let Ok(p) = serde_json::from_str::<Progress>(text) {
        let _ = check_progress(&p);
        let dir = checkpoint_dir();
        if std::fs::write(dir.join("progress.json"), text).is_ok() {
            let _ = verify_checkpoint(dir);
        }
    }
    if let Ok(c) = serde_json::from_str::<RunConfig>(text) {
        // Whatever serialises back to parseable JSON (no infinities) reads back equal.
        let json = serde_json::to_string(&c).expect("serialise");
        if let Ok(back) = serde_json::from_str::<RunConfig>(&json) {
            assert_eq!(back, c);
        }
    }
});
