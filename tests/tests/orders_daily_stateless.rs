//! The orders_daily traces through the stateless reference policies.
//!
//! Every decide event whose expected verdict the stateless policies decide
//! on their own must match exactly: allows, escalations, and denies that
//! carry a stateless code. Denies whose only codes come from stateful
//! policies (budgets, storms, thrash, breakers) are counted and left to the
//! full replay.

use arbiter_engine::Bundle;
use arbiter_tests::{engine, orders_daily_bundle, orders_daily_traces};
use arbiter_types::{Request, VerdictKind};

const STATELESS_CODES: [&str; 7] = [
    "tool_not_allowed",
    "needs_approval",
    "sql_unparseable",
    "model_not_pinned",
    "context_bloat",
    "region_not_allowed",
    "cross_environment",
];

#[test]
fn stateless_events_match_the_expected_verdicts() {
    let engine = engine();
    let bundle = Bundle::load(&engine, &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}"));
    let (mut checked, mut deferred, mut failures) = (0, 0, Vec::new());
    for (file, events) in orders_daily_traces() {
        for event in events.iter().filter(|e| e["op"] == "decide") {
            let expect = &event["expect"];
            let expected_kind: VerdictKind = serde_json::from_value(expect["decision"].clone()).unwrap();
            let codes: Vec<&str> = expect["codes"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
            let stateless: Vec<&str> = codes.iter().copied().filter(|c| STATELESS_CODES.contains(c)).collect();
            if expected_kind == VerdictKind::Deny && stateless.is_empty() {
                deferred += 1;
                continue;
            }
            let request = Request::from_json_value(&event["request"]).unwrap_or_else(|e| panic!("{file}: {e}"));
            let decision = arbiter_tests::decide(&bundle, &request, 0);
            checked += 1;
            // The bundle's stateful policies see empty state here; only the
            // stateless codes are compared.
            let actual: Vec<&str> = decision.codes().into_iter().filter(|c| STATELESS_CODES.contains(c)).collect();
            if decision.decision != expected_kind || actual != stateless {
                failures.push(format!(
                    "{file} {}: expected {} {stateless:?}, got {} {:?}",
                    request.id,
                    expected_kind.as_str(),
                    decision.decision.as_str(),
                    actual
                ));
            }
        }
    }
    println!("{checked} checked, {deferred} deferred to the stateful replay");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 80, "only {checked} events were checked");
}
