//! Host-side bindings generated from the WIT contract, one module per
//! contract version the host serves.
//!
//! Imports are trappable: a capability that cannot answer (the state store
//! failed) traps the policy, which then counts as faulted.

/// `arbiter:policy@0.1.0`, frozen in `wit/frozen/0.1.0/`.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/frozen/0.1.0",
        world: "policy",
        imports: { default: trappable },
    });
}

/// `arbiter:policy@0.2.0`, frozen in `wit/frozen/0.2.0/`.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/frozen/0.2.0",
        world: "policy",
        imports: { default: trappable },
    });
}

/// `arbiter:policy@0.3.0`, the current contract in `wit/`. Only `history`
/// changed since 0.2.0: every other interface is 0.2.0's Rust code, so a
/// 0.3.0 policy is handed the very request a 0.2.0 one is, built once, and
/// the capabilities are served by one implementation (linked under the
/// 0.3.0 names, `contract::v0_3::link`).
pub(crate) mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
        imports: { default: trappable },
        with: {
            "arbiter:policy/types@0.3.0": crate::bindings::v0_2::arbiter::policy::types,
            "arbiter:policy/log@0.3.0": crate::bindings::v0_2::arbiter::policy::log,
            "arbiter:policy/clock@0.3.0": crate::bindings::v0_2::arbiter::policy::clock,
            "arbiter:policy/budgets@0.3.0": crate::bindings::v0_2::arbiter::policy::budgets,
            "arbiter:policy/breakers@0.3.0": crate::bindings::v0_2::arbiter::policy::breakers,
        },
    });
}
