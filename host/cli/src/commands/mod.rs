pub mod build;
pub mod eval;
pub mod inspect;
pub mod pin;
pub mod replay;
pub mod report;
pub mod test;
