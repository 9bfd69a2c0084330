//! scheduler

pub mod budget;
pub mod health;
pub mod rate_limit;
pub mod retry;
