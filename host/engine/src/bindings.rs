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

/// `arbiter:policy@0.2.0`, the current contract in `wit/`.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
        imports: { default: trappable },
    });
}
