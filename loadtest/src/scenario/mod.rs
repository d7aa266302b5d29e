//! The load scenarios, one module each. Every scenario is bounded in time and
//! count, prints a progress line while it runs, and stops by itself.

pub mod broadcast;
pub mod chat;
pub mod chat_hub;
pub mod echo;
pub mod idle;
pub mod notify;
