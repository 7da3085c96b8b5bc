//! The CIFAR reader (`lcam_cli::data::cifar::parse_records`) on arbitrary bytes, and on
//! well-sized files whose label bytes and pixels come from the input: it never panics, and what
//! it accepts is consistent (one label per 3,072 pixel bytes, labels in range, pixels copied).
#![no_main]

use std::path::Path;

use lcam_cli::data::cifar::{CifarKind, IMAGE_BYTES, parse_records};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], kind: CifarKind) {
    let Ok(ds) = parse_records(bytes, kind, Path::new("fuzz.bin")) else {
        return;
    };
    let record = kind.record_bytes();
    let n = bytes.len() / record;
    assert_eq!(ds.len(), n);
    assert_eq!(ds.images.len(), n * IMAGE_BYTES);
    assert_eq!(ds.classes, kind.classes());
    assert!(ds.labels.iter().all(|&l| usize::from(l) < kind.classes()));
    match kind {
        CifarKind::Cifar10 => assert!(ds.coarse_labels.is_empty()),
        CifarKind::Cifar100 => {
            assert_eq!(ds.coarse_labels.len(), n);
            assert!(ds.coarse_labels.iter().all(|&c| c < 20));
        }
    }
    for i in 0..n {
        assert_eq!(
            ds.image(i),
            &bytes[i * record + record - IMAGE_BYTES..(i + 1) * record]
        );
        assert_eq!(ds.labels[i], bytes[i * record + record - IMAGE_BYTES - 1]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let kind = if first & 1 == 0 {
        CifarKind::Cifar10
    } else {
        CifarKind::Cifar100
    };
    // The raw bytes (almost never a whole number of records: the size check).
    check(rest, kind);
    // 0-3 whole records: label bytes from the input, pixels cycled from it (the label checks).
    let records = usize::from(first >> 1) % 4;
    let record = kind.record_bytes();
    let mut file = Vec::with_capacity(records * record);
    let mut src = rest.iter().copied().chain(std::iter::repeat(0)).cycle();
    for _ in 0..records * record {
        file.push(src.next().unwrap_or(0));
    }
    check(&file, kind);
});
