//! regorus, prepared once: the Rego rules and the bundle's settings (as
//! `data`) loaded into an engine; each thread evaluates on its own copy.
//! Two ways to run them: the interpreter (`Engine::eval_rule`) and the
//! bytecode VM (`rvm`), compiled once for the `decision` entry point.

use std::path::Path;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;
use regorus::rvm::RegoVM;
use regorus::{CompiledPolicy, Value};

use super::{Decide, Engine, Outcome, Settings};

const ENTRY_POINT: &str = "data.orders_daily.decision";

fn prepared(settings: &Settings, rules_dir: &Path) -> anyhow::Result<regorus::Engine> {
    let mut engine = regorus::Engine::new();
    engine.add_policy_from_file(rules_dir.join("orders_daily.rego"))?;
    // data.tool_scope, data.human_review, ...: one key per policy.
    let data: serde_json::Map<String, serde_json::Value> =
        settings.by_policy.iter().map(|(name, value)| (name.replace('-', "_"), value.clone())).collect();
    engine.add_data(Value::from_json_str(&serde_json::Value::Object(data).to_string())?)?;
    Ok(engine)
}

fn outcome(value: &Value) -> anyhow::Result<Outcome> {
    match value.as_string()?.as_ref() {
        "allow" => Ok(Outcome::Allow),
        "deny" => Ok(Outcome::Deny),
        "escalate" => Ok(Outcome::Escalate),
        other => anyhow::bail!("the Rego decision is `{other}`"),
    }
}

pub fn interpreter(settings: &Settings, rules_dir: &Path) -> anyhow::Result<Engine> {
    let engine = prepared(settings, rules_dir)?;
    Ok(Engine {
        cedar_subset: false,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || Ok(Box::new(Interpreter(engine.clone())) as Box<dyn Decide>)),
    })
}

struct Interpreter(regorus::Engine);

impl Decide for Interpreter {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        self.0.set_input(Value::from_json_str(std::str::from_utf8(request_json)?)?);
        outcome(&self.0.eval_rule(ENTRY_POINT.to_owned())?)
    }
}

pub fn vm(settings: &Settings, rules_dir: &Path) -> anyhow::Result<Engine> {
    let mut engine = prepared(settings, rules_dir)?;
    let policy: CompiledPolicy = engine.compile_with_entrypoint(&ENTRY_POINT.into())?;
    let program: Arc<Program> = Compiler::compile_from_policy(&policy, &[ENTRY_POINT])?;
    let data = engine.get_data();
    Ok(Engine {
        cedar_subset: false,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || {
            let mut vm = RegoVM::new_with_policy(policy.clone());
            vm.load_program(Arc::clone(&program));
            vm.set_data(data.clone())?;
            Ok(Box::new(Vm(vm)) as Box<dyn Decide>)
        }),
    })
}

struct Vm(RegoVM);

impl Decide for Vm {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        self.0.set_input(Value::from_json_str(std::str::from_utf8(request_json)?)?);
        outcome(&self.0.execute_entry_point_by_name(ENTRY_POINT)?)
    }
}
