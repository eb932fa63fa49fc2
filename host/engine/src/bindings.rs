//! Host-side bindings generated from the WIT contract in `wit/`.
//!
//! Imports are trappable: a capability that cannot answer (the state store
//! failed) traps the policy, which then counts as faulted.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "policy",
    imports: { default: trappable },
});
