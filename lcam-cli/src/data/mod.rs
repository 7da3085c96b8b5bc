//! CIFAR data: the binary reader and the augmenting, prefetching batch loader.

pub mod cifar;
pub mod loader;

pub use cifar::{CifarKind, DataError, Dataset, Split};
pub use loader::{Batch, Loader, LoaderConfig, Normalize};
