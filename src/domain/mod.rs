//! The domain's vocabulary and the ports it needs: the records (`model`) and, per aggregate,
//! the storage traits and the invalidation feed (`ports`). Nothing here knows SQL, HTTP or the
//! configuration file; `crate::store` implements the ports.

pub mod model;
pub mod ports;
pub mod words;

pub use model::*;
pub use ports::*;
pub use words::*;
