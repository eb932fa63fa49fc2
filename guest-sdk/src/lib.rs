//! `arbiter-sdk`: write an arbiter guardrail policy in Rust.
//!
//! A policy is a type implementing [`Policy`], exported with
//! [`export_policy!`]. The same crate compiles natively, so its logic is
//! unit-tested with plain `cargo test` and the helpers in [`testing`];
//! `arbiter build` compiles it to a Wasm component.
//!
//! ```
//! use arbiter_sdk::{export_policy, Policy, Request, Verdict};
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { blocked: Vec<String> }
//!
//! struct Blocklist(Settings);
//!
//! impl Policy for Blocklist {
//!     type Settings = Settings;
//!     fn new(settings: Settings) -> Result<Self, String> { Ok(Blocklist(settings)) }
//!     fn evaluate(&self, request: &Request) -> Verdict {
//!         match request.tool() {
//!             Some(tool) if self.0.blocked.iter().any(|b| b == tool) => {
//!                 Verdict::deny("tool_blocked", format!("`{tool}` is blocked"))
//!             }
//!             _ => Verdict::allow(),
//!         }
//!     }
//! }
//!
//! export_policy!(Blocklist);
//! ```

#![deny(missing_docs)]

// Lets generated code name this crate the same way inside and outside it.
extern crate self as arbiter_sdk;

mod breaker;
pub mod glob;
#[cfg(any(doc, doctest))]
pub mod guide;
pub mod host;
mod metadata;
mod refusal;
mod request;
#[cfg(not(target_arch = "wasm32"))]
mod review_check;
#[doc(hidden)]
pub mod runtime;
pub mod settings;
#[cfg(feature = "sql")]
pub mod sql;
pub mod strings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod text;
mod verdict;

/// Bindings generated from the contract in `wit/`.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "arbiter_sdk::bindings",
        runtime_path: "arbiter_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::arbiter::policy::breakers::BreakerState;
pub use bindings::arbiter::policy::history::{Mention, PastToolCall};
pub use bindings::arbiter::policy::types::{
    Action, ArgValue, Argument, BreakerConfig, BreakerGuard, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Decision,
    Environment, Escalation, ListedTool, LlmRequest, Obligation, Principal, Reason, Redaction, Request, TextAt,
    ToolCall, ToolDefinition, ToolFacts, ToolListing, ToolResult, Verdict, Window,
};
#[doc(hidden)]
pub use metadata::{encode as __encode_metadata, encoded_len as __metadata_len};
pub use refusal::Refusal;
pub use settings::parse_settings;
pub use strings::Leaf;
pub use verdict::MAX_REDACTIONS;

/// The version of the contract (`arbiter:policy`) this SDK targets.
pub const CONTRACT_VERSION: &str = "0.3.0";
/// This SDK's version, embedded in every policy it builds.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A guardrail policy.
///
/// The host creates the policy once per sandbox instance from the bundle's
/// settings, then calls [`Policy::evaluate`] for every request in scope.
/// Evaluation should be a pure function of the request, the settings and
/// what the granted capabilities report.
pub trait Policy: Sized + Send + Sync + 'static {
    /// The policy's settings, deserialised from the bundle's JSON. Use
    /// `#[serde(deny_unknown_fields)]` so typos reject the bundle.
    type Settings: serde::de::DeserializeOwned;

    /// Checks the settings; an error rejects the bundle at load time.
    fn new(settings: Self::Settings) -> Result<Self, String>;

    /// Decides one request: allow, deny or escalate, with reasons,
    /// obligations, charges and breaker guards. Runs once per request in
    /// scope; a panic is a `policy_fault`.
    fn evaluate(&self, request: &Request) -> Verdict;
}

/// Exports a [`Policy`] as the component's evaluator and embeds the crate's
/// name and version (from Cargo) in the `arbiter-policy` custom section.
///
/// `export_policy!(MyPolicy, review = "review.toml")` also embeds that file
/// of the policy crate, its review description (what each setting means,
/// what the policy guards: see the `arbiter-review` crate), in the
/// `arbiter-review` section, and adds a native test,
/// `arbiter_review_describes_the_settings`, that fails when the description
/// and the settings type disagree (the settings type must derive
/// `schemars::JsonSchema` under `cfg(test)`).
///
/// `export_policy!(MyPolicy, review = "review.toml", cases = "cases.json")`
/// also adds `arbiter_cases_hold_natively`, a native test that runs that
/// case file of the crate with [`testing::run_case_file`]; the component
/// tests (`arbiter-tests`, `policy_cases`) run the same file against the
/// built component.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty, review = $review:literal, cases = $cases:literal) => {
        $crate::export_policy!($policy, review = $review);

        #[cfg(all(test, not(target_arch = "wasm32")))]
        #[test]
        fn arbiter_cases_hold_natively() {
            let cases = concat!(env!("CARGO_MANIFEST_DIR"), "/", $cases);
            if let Err(failures) = $crate::testing::run_case_file::<$policy>(cases) {
                panic!("{failures}");
            }
        }
    };
    ($policy:ty, review = $review:literal) => {
        $crate::export_policy!($policy);

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[used]
            #[unsafe(link_section = "arbiter-review")]
            static REVIEW: [u8; include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $review)).len()] =
                *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $review));
        };

        #[cfg(all(test, not(target_arch = "wasm32")))]
        #[test]
        fn arbiter_review_describes_the_settings() {
            let review = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $review));
            if let Err(problems) = $crate::testing::check_review::<<$policy as $crate::Policy>::Settings>(review) {
                panic!("{}: {problems}", $review);
            }
        }
    };
    ($policy:ty) => {
        // Natively the policy is a plain Rust type for unit tests; only check
        // that it is a policy.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn is_policy<P: $crate::Policy>() {}
            is_policy::<$policy>();
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static POLICY: ::std::sync::OnceLock<$policy> = ::std::sync::OnceLock::new();

            struct Export;

            impl $crate::bindings::exports::arbiter::policy::evaluator::Guest for Export {
                fn init(settings: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::runtime::init::<$policy>(&POLICY, &settings)
                }

                fn evaluate(request: $crate::Request) -> $crate::Verdict {
                    $crate::runtime::evaluate::<$policy>(&POLICY, &request)
                }
            }

            $crate::bindings::__export_policy_world!(Export);

            const METADATA_LEN: usize = $crate::__metadata_len(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            #[used]
            #[unsafe(link_section = "arbiter-policy")]
            static METADATA: [u8; METADATA_LEN] =
                $crate::__encode_metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        };
    };
}
