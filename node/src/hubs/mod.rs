//! The built-in hubs, on top of [`crate::core`] (they implement
//! [`crate::core::hub::Hub`]). A new hub goes here, in a module of its own,
//! and into [`built_in`].

pub mod diagnostics;

use std::sync::Arc;

use crate::core::config::Config;
use crate::core::hub::HubSet;

/// The hubs a node with `config` serves.
pub fn built_in(config: &Config) -> HubSet {
    let mut hubs = HubSet::default();
    if config.diagnostics_hub {
        hubs = hubs.with(Arc::new(diagnostics::DiagnosticsHub));
    }
    hubs
}
