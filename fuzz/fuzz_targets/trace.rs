//! The trace parser (`Trace::from_json`) and the core replay on arbitrary text: parsing never
//! panics; a trace it accepts replays without panicking (a non-finite result is an error, not a
//! crash), survives a JSON round trip unchanged, and the trajectory parser reads its output back.
#![no_main]

use lcam_core::trace::{Trace, Trajectory};
use libfuzzer_sys::fuzz_target;

/// Replays with more than this many gradient elements are skipped (time per input).
const MAX_WORK: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Trajectory::from_json(text);
    let Ok(trace) = Trace::from_json(text) else {
        return;
    };
    let again = Trace::from_json(&trace.to_json()).expect("a valid trace round-trips");
    assert_eq!(again, trace);
    let work: usize = trace
        .steps
        .iter()
        .flat_map(|s| s.grads.iter().flatten())
        .map(Vec::len)
        .sum();
    if work > MAX_WORK {
        return;
    }
    if let Ok(trajectory) = trace.replay() {
        assert_eq!(trajectory.momenta.len(), trace.steps.len());
        assert_eq!(trajectory.params.len(), trace.params.len());
        let back = Trajectory::from_json(&trajectory.to_json_pretty());
        if trajectory
            .params
            .iter()
            .all(|p| p.data.iter().all(|v| v.is_finite()))
        {
            let back = back.expect("a finite trajectory round-trips");
            assert!(back.compare(&trajectory).passes(0.0));
        }
    }
});
