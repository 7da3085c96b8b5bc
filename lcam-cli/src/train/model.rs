//! `wrn-D-K` model specs: Wide ResNet with pre-activation basic blocks (SPEC §3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A Wide ResNet WRN-`depth`-`widen`: `(depth − 4) / 6` basic blocks in each of three groups of
/// width 16k, 32k, 64k (strides 1, 2, 2), after a 3×3 conv to 16 channels; then BN, ReLU, global
/// average pooling and a linear classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Total depth d = 6n + 4.
    pub depth: usize,
    /// Widening factor k.
    pub widen: usize,
}

/// A model string that does not parse.
#[derive(Debug, Error, PartialEq)]
#[error(
    "bad model `{input}`: {reason} (expected wrn-D-K with D = 6n+4 >= 10 and K >= 1, e.g. wrn-28-10, wrn-16-1)"
)]
pub struct ModelSpecError {
    input: String,
    reason: String,
}

impl FromStr for ModelSpec {
    type Err = ModelSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ModelSpecError {
            input: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("wrn-")
            .ok_or_else(|| err("must start with `wrn-`".into()))?;
        let (d, k) = rest
            .split_once('-')
            .ok_or_else(|| err("missing `-K`".into()))?;
        let depth: usize = d
            .parse()
            .map_err(|_| err(format!("depth `{d}` is not an integer")))?;
        let widen: usize = k
            .parse()
            .map_err(|_| err(format!("width `{k}` is not an integer")))?;
        if depth < 10 || !(depth - 4).is_multiple_of(6) {
            return Err(err(format!(
                "depth must be 6n+4 (10, 16, 22, 28, …), got {depth}"
            )));
        }
        if widen == 0 {
            return Err(err("width must be >= 1".into()));
        }
        Ok(ModelSpec { depth, widen })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrn-{}-{}", self.depth, self.widen)
    }
}

impl ModelSpec {
    /// Blocks per group, n = (d − 4) / 6.
    pub fn blocks_per_group(&self) -> usize {
        (self.depth - 4) / 6
    }

    /// Channel widths: the stem's 16, then the three groups'.
    pub fn widths(&self) -> [usize; 4] {
        [16, 16 * self.widen, 32 * self.widen, 64 * self.widen]
    }

    /// The shapes of the trainable parameters, in the models' order: stem conv, then per block
    /// BN1 weight and bias, conv1, BN2 weight and bias, conv2 and the 1×1 shortcut conv where
    /// the width changes; final BN weight and bias, linear weight and bias.
    pub fn param_shapes(&self, classes: usize) -> Vec<Vec<usize>> {
        let w = self.widths();
        let mut s = vec![vec![16, 3, 3, 3]];
        for g in 0..3 {
            let (cin, cout) = (w[g], w[g + 1]);
            for b in 0..self.blocks_per_group() {
                let i = if b == 0 { cin } else { cout };
                s.extend([vec![i], vec![i], vec![cout, i, 3, 3]]);
                s.extend([vec![cout], vec![cout], vec![cout, cout, 3, 3]]);
                if i != cout {
                    s.push(vec![cout, i, 1, 1]); // 1×1 shortcut
                }
            }
        }
        s.extend([vec![w[3]], vec![w[3]], vec![classes, w[3]], vec![classes]]);
        s
    }

    /// Trainable parameters (conv weights, BN weight and bias, linear weight and bias), the
    /// number both backends' models must have. WRN-28-10 with 10 classes: 36,479,194.
    pub fn param_count(&self, classes: usize) -> usize {
        self.param_shapes(classes)
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_pytorch() {
        // Counted with torch 2.13 on the reference architecture.
        for (m, classes, want) in [
            ("wrn-28-10", 10, 36_479_194),
            ("wrn-28-10", 100, 36_536_884),
            ("wrn-16-1", 10, 175_066),
            ("wrn-16-4", 10, 2_748_890),
            ("wrn-16-8", 100, 11_007_540),
            ("wrn-10-1", 10, 77_850),
            ("wrn-22-2", 10, 1_079_642),
            ("wrn-40-4", 10, 8_949_210),
        ] {
            let spec: ModelSpec = m.parse().expect(m);
            assert_eq!(spec.param_count(classes), want, "{m} / {classes}");
            assert_eq!(spec.to_string(), m);
        }
    }

    #[test]
    fn bad_specs_are_rejected() {
        for (s, part) in [
            ("wrn-15-1", "6n+4"),
            ("wrn-4-1", "6n+4"),
            ("resnet-18", "wrn-"),
            ("wrn-16", "-K"),
            ("wrn-16-0", "width"),
            ("wrn-x-1", "depth `x`"),
        ] {
            let e = s.parse::<ModelSpec>().expect_err(s).to_string();
            assert!(e.contains(part), "{s}: {e}");
        }
    }
}
