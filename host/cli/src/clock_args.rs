//! `--clock`: whose clock a command's decisions run on.

/// The server's clock, or the requests' own timestamps (recorded traffic
/// and tests only: a request's time then picks its budget window and expiries).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockArg {
    #[default]
    Server,
    Request,
}

impl ClockArg {
    pub fn name(self) -> &'static str {
        match self {
            ClockArg::Server => "server",
            ClockArg::Request => "request",
        }
    }
}
