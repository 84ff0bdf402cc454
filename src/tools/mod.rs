//! The commands that are not the gateway itself: `demo` (gateway, echo upstream and a demo
//! user in one process) and `echo` (an upstream that answers with the request it saw).

pub mod demo;
pub mod echo;
