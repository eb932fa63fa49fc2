//! Why a policy's evaluation ended without a verdict: the `kind` of a
//! [`crate::PolicyOutcome::Fault`], a stable code on the wire and in the
//! audit log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Reason code of a decision a fail-closed policy fault denied.
pub const POLICY_FAULT: &str = "policy_fault";

/// Reason code of a decision that needed state the store could not give
/// or record; also the code of [`FaultKind::StateUnavailable`].
pub const STATE_UNAVAILABLE: &str = "state_unavailable";

/// What stopped a policy. Serialized as its [`FaultKind::code`]; the codes
/// never change meaning, since audit records and dashboards keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FaultKind {
    /// The fuel of one evaluation ran out (a loop).
    OutOfFuel,
    /// The wall-clock deadline passed (on the policy's own time).
    DeadlineExceeded,
    /// The shadow or native stack overflowed.
    StackOverflow,
    /// The guest reached `unreachable`: a Rust panic under `panic = abort`.
    Panic,
    /// Any other trap.
    Trap,
    /// A growth beyond the memory cap was refused and the guest gave up.
    MemoryLimit,
    /// The call failed without a trap: the guest returned something the
    /// bindings could not lift.
    InvalidReturn,
    /// The verdict breaks the contract (malformed, oversized, or an
    /// obligation that does not fit the request it answers).
    InvalidVerdict,
    /// The request cannot be expressed in the policy's contract version.
    UnsupportedAction,
    /// The policy's `init` refused its settings.
    SettingsRejected,
    /// A capability read state the store could not give; decided as
    /// `state_unavailable`, not `policy_fault`.
    StateUnavailable,
    /// A capability refused a question as the policy asked it (a zero
    /// window, a breaker configuration the host refuses, a similarity
    /// threshold outside [0, 1]).
    CapabilityRefused,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::OutOfFuel,
        FaultKind::DeadlineExceeded,
        FaultKind::StackOverflow,
        FaultKind::Panic,
        FaultKind::Trap,
        FaultKind::MemoryLimit,
        FaultKind::InvalidReturn,
        FaultKind::InvalidVerdict,
        FaultKind::UnsupportedAction,
        FaultKind::SettingsRejected,
        FaultKind::StateUnavailable,
        FaultKind::CapabilityRefused,
    ];

    /// The stable code (`out_of_fuel`), as serialized.
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::OutOfFuel => "out_of_fuel",
            FaultKind::DeadlineExceeded => "deadline_exceeded",
            FaultKind::StackOverflow => "stack_overflow",
            FaultKind::Panic => "panic",
            FaultKind::Trap => "trap",
            FaultKind::MemoryLimit => "memory_limit",
            FaultKind::InvalidReturn => "invalid_return",
            FaultKind::InvalidVerdict => "invalid_verdict",
            FaultKind::UnsupportedAction => "unsupported_action",
            FaultKind::SettingsRejected => "settings_rejected",
            FaultKind::StateUnavailable => STATE_UNAVAILABLE,
            FaultKind::CapabilityRefused => "capability_refused",
        }
    }

    /// The reason code a fail-closed fault of this kind denies with: the
    /// store's failure is not the policy's, so it is not a `policy_fault`.
    pub fn reason_code(self) -> &'static str {
        match self {
            FaultKind::StateUnavailable => STATE_UNAVAILABLE,
            _ => POLICY_FAULT,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_its_code_and_reads_back() {
        for kind in FaultKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::String(kind.code().to_owned()));
            assert_eq!(serde_json::from_value::<FaultKind>(json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<FaultKind>("\"exploded\"").is_err());
    }

    /// The codes audit records and dashboards already hold: renaming one
    /// breaks them.
    #[test]
    fn the_wire_codes_are_the_ones_recorded_before_the_enum() {
        let codes: Vec<&str> = FaultKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(
            codes,
            [
                "out_of_fuel",
                "deadline_exceeded",
                "stack_overflow",
                "panic",
                "trap",
                "memory_limit",
                "invalid_return",
                "invalid_verdict",
                "unsupported_action",
                "settings_rejected",
                "state_unavailable",
                "capability_refused",
            ]
        );
    }

    #[test]
    fn only_the_store_failing_is_no_policy_fault() {
        for kind in FaultKind::ALL {
            let expected = if kind == FaultKind::StateUnavailable { STATE_UNAVAILABLE } else { POLICY_FAULT };
            assert_eq!(kind.reason_code(), expected, "{kind}");
        }
    }

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<&str> = FaultKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), FaultKind::ALL.len());
    }
}
