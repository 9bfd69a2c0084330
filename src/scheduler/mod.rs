//! scheduler

pub mod budget;
pub mod health;
pub mod retry;
