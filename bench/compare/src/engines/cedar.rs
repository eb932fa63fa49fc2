//! Cedar, prepared once: the policy set and the tool catalogue (which tools
//! belong to which set) parsed up front; per request, the JSON is parsed and
//! a Cedar request with its context is built. Only tool-scope and the tool
//! lists of human-review fit (rules/orders_daily.cedar says why).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use serde_json::Value;

use super::{Decide, Engine, Outcome, Settings};

fn uid(kind: &str, id: &str) -> anyhow::Result<EntityUid> {
    Ok(EntityUid::from_type_name_and_id(EntityTypeName::from_str(kind)?, EntityId::new(id)))
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Tools and the sets they belong to, from the bundle's settings.
fn catalogue(settings: &Settings) -> anyhow::Result<Entities> {
    let mut parents: HashMap<&str, HashSet<EntityUid>> = HashMap::new();
    for rule in settings.of("tool-scope")?["rules"].as_array().into_iter().flatten() {
        let set = uid(
            "ToolSet",
            &format!("{}/{}", rule["pipeline"].as_str().unwrap_or("*"), rule["agent"].as_str().unwrap_or("*")),
        )?;
        for tool in strings(&rule["tools"]) {
            parents.entry(tool).or_default().insert(set.clone());
        }
    }
    for tool in strings(&settings.of("human-review")?["irreversible_tools"]) {
        parents.entry(tool).or_default().insert(uid("ToolSet", "irreversible")?);
    }
    let entities = parents
        .into_iter()
        .map(|(tool, sets)| Ok(Entity::new_no_attrs(uid("Tool", tool)?, sets)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Entities::from_entities(entities, None)?)
}

pub fn engine(settings: &Settings, rules_dir: &Path) -> anyhow::Result<Engine> {
    let text = std::fs::read_to_string(rules_dir.join("orders_daily.cedar"))?;
    let prepared = Arc::new(Prepared {
        policies: PolicySet::from_str(&text).map_err(|e| anyhow::anyhow!("orders_daily.cedar: {e}"))?,
        entities: catalogue(settings)?,
        authorizer: Authorizer::new(),
        call: uid("Action", "call")?,
    });
    Ok(Engine {
        cedar_subset: true,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || Ok(Box::new(Cedar(Arc::clone(&prepared))) as Box<dyn Decide>)),
    })
}

struct Prepared {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    call: EntityUid,
}

struct Cedar(Arc<Prepared>);

impl Decide for Cedar {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request: Value = serde_json::from_slice(request_json)?;
        let (principal, action) = (&request["principal"], &request["action"]);
        let agent = format!(
            "{}/{}",
            principal["pipeline"].as_str().unwrap_or_default(),
            principal["agent"].as_str().unwrap_or_default()
        );
        let declared_irreversible = action["declared"]["irreversible"].as_bool().unwrap_or(false);
        let context = Context::from_pairs([
            ("declared_irreversible".to_owned(), RestrictedExpression::new_bool(declared_irreversible)),
            (
                "environment".to_owned(),
                RestrictedExpression::new_string(principal["environment"].as_str().unwrap_or_default().to_owned()),
            ),
        ])?;
        let p = &self.0;
        let cedar_request = Request::new(
            uid("Agent", &agent)?,
            p.call.clone(),
            uid("Tool", action["tool"].as_str().unwrap_or_default())?,
            context,
            None,
        )?;
        Ok(match p.authorizer.is_authorized(&cedar_request, &p.policies, &p.entities).decision() {
            Decision::Allow => Outcome::Allow,
            Decision::Deny => Outcome::Deny,
        })
    }
}
