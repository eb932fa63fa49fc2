//! A policy that misbehaves as its settings say, to prove the host survives
//! it. `{"behaviour": "..."}` picks one of [`Behaviour`].

use std::sync::atomic::{AtomicU32, Ordering};

use arbiter_sdk::host::{budgets, clock, history, log};
use arbiter_sdk::text::{MAX_QUESTION_ITEMS, MAX_QUESTION_TEXT_BYTES};
use arbiter_sdk::{ChargeUnit, Policy, Request, Verdict, Window, export_policy};
use serde::Deserialize;

/// Evaluations this instance has served (see [`Behaviour::CountCalls`]).
static CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Allows, after logging and reading the clock (uses both capabilities).
    Allow,
    /// Denies with the clock's reading in the message.
    EchoClock,
    LoopForever,
    /// Loops forever inside `init`, at bundle load.
    LoopInInit,
    MemoryBomb,
    DeepRecursion,
    Panic,
    HugeReason,
    /// Counts its evaluations in a global and denies with the count as the
    /// message, after reading a budget (so a test's state store can hold
    /// evaluations in flight): shows which instance served a call.
    CountCalls,
    /// Allows, hiding a tool the listing does not have.
    HideUnlisted,
    /// Allows, masking bytes past the end of the first argument.
    RedactOutOfBounds,
    /// Allows, masking a span of an argument that is not there.
    RedactMissing,
    /// Allows, after asking a near-duplicate question no answer fits (a
    /// NaN threshold).
    NanSimilarity,
    /// Allows, after asking how many earlier calls nearly repeat a text one
    /// byte over what the host compares.
    OversizedText,
    /// Allows, after asking which earlier call mentioned any of one marker
    /// more than the host answers for (its work is not the policy's fuel).
    OversizedQuestion,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub behaviour: Behaviour,
}

pub struct Hostile {
    behaviour: Behaviour,
}

impl Policy for Hostile {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.behaviour == Behaviour::LoopInInit {
            spin();
        }
        Ok(Hostile { behaviour: settings.behaviour })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        match self.behaviour {
            Behaviour::Allow | Behaviour::LoopInInit => {
                log::info(&format!("allowing {} at {}", request.id, clock::now_ms()));
                Verdict::allow()
            }
            Behaviour::EchoClock => Verdict::deny("clock", clock::now_ms().to_string()),
            Behaviour::LoopForever => spin(),
            Behaviour::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Behaviour::DeepRecursion => Verdict::deny("depth", recurse(u64::MAX).to_string()),
            Behaviour::Panic => panic!("policy bug"),
            Behaviour::HugeReason => Verdict::deny("huge", "x".repeat(10 << 20)),
            Behaviour::HideUnlisted => Verdict::allow().hide_tool("never-listed"),
            Behaviour::RedactOutOfBounds => Verdict::allow().redact("/sql", 0..1_000_000, "secret"),
            Behaviour::RedactMissing => Verdict::allow().redact("/not/there", 0..1, "secret"),
            Behaviour::NanSimilarity => {
                history::count_similar("docs.search", "query", "orders", f64::NAN, i64::MIN);
                Verdict::allow()
            }
            Behaviour::OversizedText => {
                let text = "x".repeat(MAX_QUESTION_TEXT_BYTES + 1);
                history::count_similar("docs.search", "query", &text, 0.5, i64::MIN);
                Verdict::allow()
            }
            Behaviour::OversizedQuestion => {
                let markers: Vec<String> = (0..=MAX_QUESTION_ITEMS).map(|i| format!("m{i}.")).collect();
                history::first_mention(&["*".to_owned()], &["sql".to_owned()], &markers, i64::MIN);
                Verdict::allow()
            }
            Behaviour::CountCalls => {
                let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                budgets::used("count", Window::Run, ChargeUnit::Tokens);
                Verdict::deny("count", calls.to_string())
            }
        }
    }
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    if n == 0 { 0 } else { recurse(n - 1).wrapping_add(frame[3]) }
}

export_policy!(Hostile);
