# The five stateless orders_daily rules in Rego, as an OPA user would write
# them: one package, rules reading the request from `input` and the same
# settings as bench/compare/bundle.toml from `data` (the harness loads the
# bundle's settings as data.<policy>). `decision` is the combined verdict:
# any deny wins, then any escalation, else allow.
package orders_daily

import rego.v1

default decision := "allow"

decision := "deny" if count(deny) > 0

decision := "escalate" if {
	count(deny) == 0
	count(escalate) > 0
}

tool_call if input.action.kind == "tool_call"

llm_request if input.action.kind == "llm_request"

tool := input.action.tool

# tool-scope: an agent may call only the tools listed for it.
deny contains "tool_not_allowed" if {
	tool_call
	not tool_allowed
}

tool_allowed if {
	some rule in data.tool_scope.rules
	glob.match(object.get(rule, "pipeline", "*"), [], input.principal.pipeline)
	glob.match(object.get(rule, "agent", "*"), [], input.principal.agent)
	applies_in_environment(rule)
	some pattern in rule.tools
	glob.match(pattern, [], tool)
}

applies_in_environment(rule) if not rule.environments

applies_in_environment(rule) if input.principal.environment in rule.environments

# human-review: irreversible actions wait for a human.
escalate contains "needs_approval" if {
	tool_call
	some pattern in data.human_review.irreversible_tools
	glob.match(pattern, [], tool)
}

escalate contains "needs_approval" if {
	tool_call
	input.action.declared.irreversible == true
}

# The SQL rule (`read_only = true`: only one read-only query passes) is an
# approximation here: Rego has no SQL parser, so this reads text where
# arbiter parses it (sqlparser, in the guest). A query passes when, outside
# '...' literals, it starts with a read keyword, holds no `;` but a final
# one and no write word. It gives arbiter's verdicts on the harness's cases,
# not on policies/human-review/tests/sql_corpus: comments, quoted
# identifiers, dollar quotes, functions and unparseable SQL are beyond it.
escalate contains "needs_approval" if {
	tool_call
	some rule in data.human_review.sql_rules
	rule.read_only
	some pattern in rule.tools
	glob.match(pattern, [], tool)
	sql := input.action.arguments[rule.argument]
	is_string(sql)
	not read_only_sql(sql)
}

sql_write_words := {
	"insert", "update", "delete", "merge", "drop", "create", "alter", "truncate",
	"grant", "revoke", "copy", "call", "execute", "into", "lock", "set",
}

read_only_sql(sql) if {
	outside_literals := lower(regex.replace(sql, `'(?:[^']|'')*'`, " "))
	regex.match(`^\s*(select|with|explain|show|describe|values)\b`, outside_literals)
	not contains(trim_right(trim_space(outside_literals), "; "), ";")
	words := {word | some word in regex.split(`[^a-z0-9_]+`, outside_literals)}
	count(words & sql_write_words) == 0
}

# model-pin: only pinned, dated model versions.
deny contains "model_not_pinned" if {
	llm_request
	not input.action.model in data.model_pin.pinned
	not pinned_for_pipeline
}

pinned_for_pipeline if {
	some entry in object.get(data.model_pin, "per_pipeline", [])
	glob.match(entry.pipeline, [], input.principal.pipeline)
	input.action.model in entry.pinned
}

# context-bloat: prompts past the limit are a runaway context.
deny contains "context_bloat" if {
	llm_request
	input.action.prompt_tokens > data.context_bloat.deny_above
}

# data-residency: allowed regions only; dev agents keep out of prod data.
# (`is_string(region)` also keeps regorus's VM right: 0.14.1 takes
# `not x in set` as true when x is undefined; its interpreter does not.)
region_argument := object.get(data.data_residency, "region_argument", "region")

deny contains "region_not_allowed" if {
	tool_call
	region := input.action.arguments[region_argument]
	is_string(region)
	not region in data.data_residency.allowed_regions
}

deny contains "region_not_allowed" if {
	tool_call
	region := input.action.declared.region
	is_string(region)
	not region in data.data_residency.allowed_regions
}

deny contains "region_not_allowed" if {
	llm_request
	region := data.data_residency.model_regions[input.action.model]
	is_string(region)
	not region in data.data_residency.allowed_regions
}

deny contains "cross_environment" if {
	tool_call
	some rule in data.data_residency.cross_environment
	rule.environment == input.principal.environment
	some pattern in rule.tools
	glob.match(pattern, [], tool)
	some argument in rule.arguments
	value := input.action.arguments[argument]
	is_string(value)
	some prefix in rule.forbidden_prefixes
	# The prefix at the start of a word, any case.
	regex.match(concat("", [`(?i)(^|[^A-Za-z0-9_])`, replace(prefix, ".", `\.`)]), value)
}
